"""Motion families of the shapes world: how objects move (and how big they are) in one table.

    MOTION_FAMILIES["circular"].path(rng, PathContext(...))    # per-frame centres (x, y) of one object
    ShapesWorld(motion="zigzag").sample(3, split="eval")       # a held-out sample of that family

"bounce" is the training distribution (constant velocity, bouncing off the frame edges, the world's own radius
and speed ranges). Every other family is *held out*: the world generates it, training never does, and
`kmono mvideo eval` reports each one separately, so a model that only learned the training motion shows it.

Our choices (the issue names the families; sizes and speeds are fractions of min(height, width), written as
pixels at 32 px):

- **fast**: bouncing at 6-12 px per frame (training: 0.6-1.9 px).
- **zigzag**: a constant drift of 1.3-2.2 px/frame along a main direction plus a perpendicular 2.5-3.8 px/frame
  whose sign flips every 2 frames.
- **circular**: a constant angular speed (0.5-1 turn over the clip, either sense) on a circle of radius
  5-10 px that fits in the frame.
- **crossing**: at least two objects; the first moves in a straight line, the second crosses the first's path
  at the same moment, mid-clip (both pass through one point at t = (T - 1) / 2, at 60-180 degrees to each
  other), so their masks overlap in the middle frames. Further objects bounce.
- **entering**: every object starts touching or half outside a random edge (centre between one radius outside
  and the edge itself) and moves in a straight line to a random place fully inside the frame.
- **stop_reverse**: moves at 2-3 px/frame for ~35-45% of the clip, stands still for at least one frame, then
  goes back the way it came.
- **small** / **large**: bouncing at training speeds with radius 2-3 px / 8-11 px (training: 3.2-5.4 px).

Paths that are not bouncing are placed by `place_in_frame`: a random translation that keeps every centre at
least one radius inside the frame (centred when the path is too big for that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Centers = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PathContext:
    """What a path function may use: the frame, the object's radius and the family's speed range."""

    width: int
    height: int
    num_frames: int
    radius: float
    speed_range: tuple[float, float]
    """Pixels per frame as a fraction of `side`."""
    previous: list[Centers] = field(default_factory=list)
    """The centres of the objects already placed in this sample (caption order)."""

    @property
    def side(self) -> float:
        return float(min(self.height, self.width))


def bounce_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """Constant velocity, bouncing off the edges; starts away from the other objects' starts when possible.

    This is the training motion: its random draws (and so every training sample) must never change.
    """
    radius, side = ctx.radius, ctx.side
    lo_x, hi_x = radius, ctx.width - radius
    lo_y, hi_y = radius, ctx.height - radius
    others = [c[0] for c in ctx.previous]
    # Start away from the other objects' starting points when possible (a few tries, then anywhere).
    for _ in range(20):
        x, y = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
        if all(np.hypot(x - ox, y - oy) > 1.6 * radius for ox, oy in others):
            break
    speed = float(rng.uniform(*ctx.speed_range)) * side
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    centers = []
    for _ in range(ctx.num_frames):
        centers.append((x, y))
        x, y = x + vx, y + vy
        if not lo_x <= x <= hi_x:
            vx = -vx
            x = float(np.clip(x, lo_x, hi_x))
        if not lo_y <= y <= hi_y:
            vy = -vy
            y = float(np.clip(y, lo_y, hi_y))
    return tuple(centers)


def place_in_frame(rng: np.random.Generator, offsets: np.ndarray, ctx: PathContext) -> Centers:
    """Translate a path's (T, 2) offsets so every centre lies in [r, W - r] x [r, H - r] (centred if too big)."""
    r = ctx.radius
    out = []
    for axis, size in ((0, ctx.width), (1, ctx.height)):
        lo = r - offsets[:, axis].min()
        hi = size - r - offsets[:, axis].max()
        start = float(rng.uniform(lo, hi)) if hi >= lo else (lo + hi) / 2
        out.append(offsets[:, axis] + start)
    return tuple((float(x), float(y)) for x, y in zip(*out, strict=True))


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def zigzag_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """A main-direction drift plus a perpendicular velocity whose sign flips every `ZIGZAG_PERIOD` frames."""
    side = ctx.side
    drift = float(rng.uniform(*ctx.speed_range)) * side
    swing = float(rng.uniform(*ZIGZAG_SWING)) * side
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    main, across = _unit(angle), _unit(angle + np.pi / 2)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    offsets = [np.zeros(2)]
    for step in range(ctx.num_frames - 1):
        flip = sign if (step // ZIGZAG_PERIOD) % 2 == 0 else -sign
        offsets.append(offsets[-1] + drift * main + flip * swing * across)
    return place_in_frame(rng, np.array(offsets), ctx)


def circular_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """Constant angular speed on a circle that fits in the frame (radius shrunk to fit when needed)."""
    side, r = ctx.side, ctx.radius
    orbit = float(rng.uniform(*CIRCLE_ORBIT)) * side
    orbit = min(orbit, (min(ctx.width, ctx.height) - 2 * r) / 2)
    turns = float(rng.uniform(*CIRCLE_TURNS)) * (1.0 if rng.random() < 0.5 else -1.0)
    phase = float(rng.uniform(0.0, 2.0 * np.pi))
    cx = float(rng.uniform(r + orbit, ctx.width - r - orbit))
    cy = float(rng.uniform(r + orbit, ctx.height - r - orbit))
    t = np.arange(ctx.num_frames)
    theta = phase + 2.0 * np.pi * turns * t / ctx.num_frames
    return tuple((cx + orbit * float(np.cos(a)), cy + orbit * float(np.sin(a))) for a in theta)


def crossing_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """Object 1: a straight line; object 2: a straight line through object 1's mid-clip point at the same time."""
    if len(ctx.previous) >= 2:
        return bounce_path(rng, ctx)
    r, side, last = ctx.radius, ctx.side, ctx.num_frames - 1
    mid = last / 2.0
    if not ctx.previous:
        point = np.array(
            [rng.uniform(0.35, 0.65) * ctx.width, rng.uniform(0.35, 0.65) * ctx.height], dtype=np.float64
        )
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
    else:
        first = np.array(ctx.previous[0])
        lo, hi = int(np.floor(mid)), int(np.ceil(mid))
        point = (first[lo] + first[hi]) / 2.0  # where the first object is at t = mid
        step = first[hi] - first[lo] if hi > lo else first[-1] - first[0]
        first_angle = float(np.arctan2(step[1], step[0]))
        turn = float(rng.uniform(np.pi / 3, np.pi)) * (1.0 if rng.random() < 0.5 else -1.0)
        angle = first_angle + turn
    direction = _unit(angle)
    speed = float(rng.uniform(*ctx.speed_range)) * side
    # The fastest speed that keeps both ends of the segment (point -/+ mid * v) inside [r, size - r].
    room = []
    for axis, size in ((0, ctx.width), (1, ctx.height)):
        d = abs(direction[axis])
        if d > 1e-9 and mid > 0:
            room.append(min(point[axis] - r, size - r - point[axis]) / (mid * d))
    speed = max(0.0, min([speed, *room]))
    t = np.arange(ctx.num_frames)[:, None] - mid
    path = point[None, :] + t * speed * direction[None, :]
    return tuple((float(x), float(y)) for x, y in path)


def entering_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """From touching or half outside a random edge, a straight line to a random place fully inside the frame."""
    r, w, h = ctx.radius, ctx.width, ctx.height
    outside = (
        float(rng.uniform(0.0, 1.0)) * r
    )  # how far the centre starts beyond the edge: half out .. touching
    edge = int(rng.integers(4))  # left, right, top, bottom
    along = float(rng.uniform(r, (h if edge < 2 else w) - r))
    start = {
        0: (-outside, along),
        1: (w + outside, along),
        2: (along, -outside),
        3: (along, h + outside),
    }[edge]
    end = (float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r)))
    frac = np.linspace(0.0, 1.0, ctx.num_frames)
    return tuple(
        (start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1])) for f in frac.tolist()
    )


def stop_reverse_path(rng: np.random.Generator, ctx: PathContext) -> Centers:
    """Forward for ~35-45% of the steps, still for at least one, then backward at the same speed."""
    steps = ctx.num_frames - 1
    forward = max(1, int(round(float(rng.uniform(0.35, 0.45)) * steps)))
    still = max(1, int(round(float(rng.uniform(0.15, 0.3)) * steps)))
    speed = float(rng.uniform(*ctx.speed_range)) * ctx.side
    velocity = speed * _unit(float(rng.uniform(0.0, 2.0 * np.pi)))
    offsets = [np.zeros(2)]
    for step in range(steps):
        v = velocity if step < forward else (0.0 * velocity if step < forward + still else -velocity)
        offsets.append(offsets[-1] + v)
    return place_in_frame(rng, np.array(offsets), ctx)


ZIGZAG_PERIOD = 2
"""Frames between sign flips of a zig-zag's perpendicular velocity."""
ZIGZAG_SWING = (2.5 / 32, 3.8 / 32)
"""Perpendicular speed of a zig-zag (fraction of the side per frame)."""
CIRCLE_ORBIT = (5 / 32, 10 / 32)
"""Radius of a circular path (fraction of the side)."""
CIRCLE_TURNS = (0.5, 1.0)
"""Turns over the clip of a circular path."""


@dataclass(frozen=True)
class MotionFamily:
    """One way objects move: a path function, and the object sizes and speeds it uses (None: the world's)."""

    description: str
    path: Callable[[np.random.Generator, PathContext], Centers]
    radius_range: tuple[float, float] | None = None
    """Object radius as a fraction of min(height, width)."""
    speed_range: tuple[float, float] | None = None
    """Pixels per frame as a fraction of min(height, width)."""
    min_objects: int = 1
    held_out: bool = True
    """Never in training data (everything but the training motion)."""


MOTION_FAMILIES: dict[str, MotionFamily] = {
    "bounce": MotionFamily(
        "constant velocity, bouncing off the edges (the training motion)", bounce_path, held_out=False
    ),
    "fast": MotionFamily("bouncing at 6-12 px per frame", bounce_path, speed_range=(6 / 32, 12 / 32)),
    "zigzag": MotionFamily(
        "drift with a perpendicular swing flipping every 2 frames",
        zigzag_path,
        speed_range=(1.3 / 32, 2.2 / 32),
    ),
    "circular": MotionFamily("constant angular speed on a circle", circular_path),
    "crossing": MotionFamily(
        "two objects whose straight paths cross mid-clip",
        crossing_path,
        speed_range=(2.0 / 32, 4.0 / 32),
        min_objects=2,
    ),
    "entering": MotionFamily("entering the frame from outside an edge", entering_path),
    "stop_reverse": MotionFamily(
        "moves, stops, goes back", stop_reverse_path, speed_range=(2.0 / 32, 3.0 / 32)
    ),
    "small": MotionFamily("bouncing, radius 2-3 px", bounce_path, radius_range=(2 / 32, 3 / 32)),
    "large": MotionFamily("bouncing, radius 8-11 px", bounce_path, radius_range=(8 / 32, 11 / 32)),
}
"""Every motion family the shapes world generates, by name (sizes: fractions of min(height, width))."""

HELD_OUT_FAMILIES: tuple[str, ...] = tuple(name for name, f in MOTION_FAMILIES.items() if f.held_out)
"""The families training never sees, in table order."""
