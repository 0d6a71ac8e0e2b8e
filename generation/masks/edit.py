"""Editing mask sequences: pure functions `MaskSequence -> MaskSequence`.

    from generation.masks import edit
    seq = edit.select_objects(seq, object_ids=[1, 2])
    seq = edit.translate(seq, Trajectory([(0, (0, 0)), (15, (40, 0))]), object_ids=[1])
    seq = edit.retime(edit.reverse(seq), speed=2)
    seq = edit.dilate(seq, radius_pixels=2)

Objects: `select_objects`, `drop_objects`, `relabel_objects`. Geometry (per object, each frame about the
centre of the object's box in that frame, clipped to the frame): `translate`, `scale`, `rotate`, constant or
along a keyframed `Trajectory`; `dilate`, `erode`. Time: `trim`, `retime`, `reverse`, `loop`, `time_warp`,
`resample_fps`.

Every function streams: it decodes one source frame at a time and adds the result to a
`MaskSequenceBuilder`, so memory holds one frame plus the compressed output. A bad argument raises
`FieldError` (a ValueError) whose `field` starts with the parameter name, e.g. `object_ids[1]`,
`offset.keyframes[2].frame_index`, `start_frame`, `speed`.

*Our* choices, where the issue and the papers leave the detail open:

- Translations move by whole pixels: offsets are rounded half to even, so translating by v and then by -v is
  the identity wherever nothing left the frame. Scale and rotation sample the source mask at the inverse
  image of each output pixel centre (nearest neighbour); factor 1 and angle 0 are exact identities.
  Rotation is counter-clockwise as seen on screen (y grows down). A factor that interpolates to <= 0
  between keyframes (smooth curves may overshoot) makes the object vanish in that frame.
- One owner per pixel: objects an edit moves are painted over the objects it leaves alone, and among the
  moved ones a higher id covers a lower one. An object that loses pixels this way is flagged OCCLUDED in
  that frame; one that loses all of them is absent there. Dilation grows masks into background pixels only
  (a pixel two grown objects both reach goes to the lower id); erosion treats the outside of the frame as
  part of the mask, so an object cut by the frame edge is not eaten away from that edge. A radius past the
  frame's diagonal is clamped to it (`max_radius`), not refused: it has exactly the same effect; the work is
  O(width x height) per object and frame whatever the radius.
- Objects whose frame holds only a box (no mask) have the box moved, scaled, rotated (the axis-aligned box
  of the turned corners), grown or shrunk, and clipped to the frame; an empty box is dropped.
- Retiming keeps the first frame: frame i of the result shows source frame floor(i * speed) and the result
  has ceil(n / speed) frames, so every source frame inside the motion's duration is reachable; speed 2 keeps
  the even frames, speed 0.5 shows each frame twice. `resample_fps` is the same rule with speed
  fps_in / fps_out and the new fps. Ratios are taken as fractions (1/3 stays exact).
- Ping-pong loops turn without repeating the end frames: 0 1 2 3 2 1 0 1 2 3 ...
- `time_warp` rounds each curve value half to even and clamps it to the sequence (a smooth curve may
  overshoot its keyframes, which themselves must be valid frame indices).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from generation.masks.trajectory import FieldError, Trajectory, check_int, check_number
from libs.media import BoundingBox, MaskObject, MaskSequence, MaskSequenceBuilder, Visibility

__all__ = [
    "MIN_FPS",
    "Frame",
    "add_frame",
    "check_fps",
    "dilate",
    "drop_objects",
    "erode",
    "keep_best_objects",
    "fps_ratio",
    "loop",
    "loop_num_frames",
    "max_radius",
    "read_frame",
    "relabel_objects",
    "resample_fps",
    "resample_num_frames",
    "retime",
    "retime_num_frames",
    "reverse",
    "rotate",
    "scale",
    "select_objects",
    "time_warp",
    "translate",
    "trim",
]

_MAX_RATIO_DENOMINATOR = 10_000
MIN_FPS = 1e-3
"""The lowest frame rate `resample_fps` (and composition) resamples to: one frame per 1,000 s. Lower rates are
refused (FieldError at `fps`) rather than turned into fractions that are 0."""


# -- frames in and out ---------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One decoded frame: the id map and the per-frame data the builder takes back."""

    id_map: np.ndarray
    scores: dict[int, float] = field(default_factory=dict)
    occluded: set[int] = field(default_factory=set)
    boxes: dict[int, BoundingBox] = field(default_factory=dict)
    """Objects known only by a box in this frame."""


def read_frame(seq: MaskSequence, t: int) -> Frame:
    """Frame t of `seq`, decoded."""
    frame = Frame(seq.id_map(t))
    for oid in seq.frame_object_ids(t):
        frame.scores[oid] = seq.frame_score(t, oid)
        if seq.visibility(t, oid) is Visibility.OCCLUDED:
            frame.occluded.add(oid)
        if seq.rle_counts(t, oid) is None:
            box = seq.box(t, oid)
            assert box is not None
            frame.boxes[oid] = box
    return frame


def add_frame(builder: MaskSequenceBuilder, frame: Frame) -> None:
    builder.add_frame(frame.id_map, scores=frame.scores, occluded=frame.occluded, boxes=frame.boxes)


def _rebuild(
    seq: MaskSequence,
    frames: Iterable[Frame],
    *,
    objects: Iterable[MaskObject] | None = None,
    fps: float | None = None,
) -> MaskSequence:
    builder = MaskSequenceBuilder(seq.width, seq.height, seq.fps if fps is None else fps)
    for frame in frames:
        add_frame(builder, frame)
    return builder.build(seq.objects if objects is None else objects)


def _reindexed(seq: MaskSequence, indices: Iterable[int], fps: float | None = None) -> MaskSequence:
    """The frames of `seq` in the order `indices` gives (a repeated index is decoded once in a row)."""

    def frames() -> Iterator[Frame]:
        last_index, last = -1, None
        for index in indices:
            if index != last_index:
                last_index, last = index, read_frame(seq, index)
            assert last is not None
            yield last

    return _rebuild(seq, frames(), fps=fps)


# -- argument checks ---------------------------------------------------------------------------------------


def _object_ids(seq: MaskSequence, object_ids: Iterable[int] | None, field: str = "object_ids") -> set[int]:
    """The ids asked for, all checked to exist; None or empty means every object."""
    ids = list(object_ids or ())
    if not ids:
        return set(seq.object_ids)
    known = set(seq.object_ids)
    result = set()
    for i, value in enumerate(ids):
        oid = check_int(value, f"{field}[{i}]")
        if oid not in known:
            raise FieldError(
                f"{field}[{i}]", f"unknown object id {oid}; the sequence has ids {sorted(known)}"
            )
        result.add(oid)
    return result


def _matching(seq: MaskSequence, object_ids: Iterable[int], labels: Iterable[str], verb: str) -> set[int]:
    object_ids, labels = list(object_ids or ()), list(labels or ())
    if not object_ids and not labels:
        raise FieldError("object_ids", f"give at least one object id or label to {verb}")
    matched = _object_ids(seq, object_ids) if object_ids else set()
    known = sorted({o.label for o in seq.objects})
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise FieldError(f"labels[{i}]", f"must be a string, got {label!r}")
        hits = {o.id for o in seq.objects if o.label == label}
        if not hits:
            raise FieldError(f"labels[{i}]", f"no object is labelled {label!r}; the labels are {known}")
        matched |= hits
    return matched


# -- objects -------------------------------------------------------------------------------------------------


def _keep_objects(seq: MaskSequence, keep: set[int]) -> MaskSequence:
    lookup = np.array(sorted(keep), dtype=np.int32)

    def frames() -> Iterator[Frame]:
        for t in range(seq.num_frames):
            frame = read_frame(seq, t)
            frame.id_map[~np.isin(frame.id_map, lookup)] = 0
            frame.boxes = {oid: box for oid, box in frame.boxes.items() if oid in keep}
            yield frame

    return _rebuild(seq, frames(), objects=[o for o in seq.objects if o.id in keep])


def keep_best_objects(seq: MaskSequence, max_objects: int | None) -> MaskSequence:
    """At most `max_objects` objects: the highest-scored ones (ties: the lower id); None or 0 keeps all."""
    if not max_objects or len(seq.objects) <= max_objects:
        return seq
    best = sorted(seq.objects, key=lambda o: (-o.score, o.id))[:max_objects]
    return select_objects(seq, object_ids=[o.id for o in best])


def select_objects(
    seq: MaskSequence, object_ids: Iterable[int] = (), labels: Iterable[str] = ()
) -> MaskSequence:
    """Keep only the objects matching any of `object_ids` or `labels` (exact match); drop the others."""
    return _keep_objects(seq, _matching(seq, object_ids, labels, "select"))


def drop_objects(
    seq: MaskSequence, object_ids: Iterable[int] = (), labels: Iterable[str] = ()
) -> MaskSequence:
    """Remove the objects matching any of `object_ids` or `labels` (their pixels become background)."""
    return _keep_objects(seq, set(seq.object_ids) - _matching(seq, object_ids, labels, "drop"))


def relabel_objects(seq: MaskSequence, labels: Mapping[int, str]) -> MaskSequence:
    """Give objects new labels: `labels` maps object id -> new label. Masks are unchanged."""
    if not labels:
        raise FieldError("labels", "give at least one object id -> label pair")
    known = set(seq.object_ids)
    new = {}
    for key, label in labels.items():
        oid = check_int(key, "labels")
        if oid not in known:
            raise FieldError("labels", f"unknown object id {oid}; the sequence has ids {sorted(known)}")
        if not isinstance(label, str):
            raise FieldError("labels", f"the label of object {oid} must be a string, got {label!r}")
        new[oid] = label
    objects = [MaskObject(o.id, new.get(o.id, o.label), o.score) for o in seq.objects]
    return _rebuild(seq, (read_frame(seq, t) for t in range(seq.num_frames)), objects=objects)


# -- geometry --------------------------------------------------------------------------------------------------


def _trajectory(value: Any, name: str, dims: int, num_frames: int, *, positive: bool = False) -> Trajectory:
    """`value` (a constant or a Trajectory) as a Trajectory of `dims` numbers, checked against the sequence."""
    if isinstance(value, Trajectory):
        if value.dims != dims:
            what = "(dx, dy) points" if dims == 2 else "single numbers"
            raise FieldError(name, f"keyframe values must be {what}")
        value.check_frames(num_frames, name)
        if positive:
            value.check_values(name, positive=True)
        return value
    if dims == 2:
        try:
            dx, dy = value
        except (TypeError, ValueError):
            raise FieldError(name, f"must be (dx, dy) or a Trajectory, got {value!r}") from None
        return Trajectory.constant((check_number(dx, f"{name}.dx"), check_number(dy, f"{name}.dy")))
    return Trajectory.constant(check_number(value, name, positive=positive))


def _center(box: BoundingBox) -> tuple[float, float]:
    return (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0


def _shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`mask` moved by whole pixels; what leaves the frame is lost."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _warp_mask(mask: np.ndarray, box: BoundingBox, linear: np.ndarray) -> np.ndarray:
    """`mask` (whose pixels lie in `box`) mapped by p -> c + linear (p - c), c the box centre; nearest
    neighbour at output pixel centres, only over the image of the box."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if not np.isfinite(linear).all() or abs(np.linalg.det(linear)) < 1e-12:
        return out
    cx, cy = _center(box)
    corners = np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x0, box.y1], [box.x1, box.y1]]) - (cx, cy)
    moved = corners @ linear.T + (cx, cy)  # (4, 2)
    x0, y0 = (max(0, math.floor(v)) for v in moved.min(axis=0))
    x1, y1 = min(w, math.ceil(moved[:, 0].max())), min(h, math.ceil(moved[:, 1].max()))
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1]
    px, py = xs + 0.5 - cx, ys + 0.5 - cy
    inverse = np.linalg.inv(linear)
    sx = np.floor(inverse[0, 0] * px + inverse[0, 1] * py + cx).astype(np.int64)
    sy = np.floor(inverse[1, 0] * px + inverse[1, 1] * py + cy).astype(np.int64)
    inside = (sx >= box.x0) & (sx < box.x1) & (sy >= box.y0) & (sy < box.y1)
    region = out[y0:y1, x0:x1]
    region[inside] = mask[sy[inside], sx[inside]]
    return out


def _clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> BoundingBox | None:
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return BoundingBox(x0, y0, x1, y1)


def _warp_box(box: BoundingBox, linear: np.ndarray, shift: tuple[float, float], width: int, height: int):
    cx, cy = _center(box)
    corners = np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x0, box.y1], [box.x1, box.y1]]) - (cx, cy)
    moved = corners @ linear.T + (cx + shift[0], cy + shift[1])
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    return _clip_box(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), width, height)


Transform = Callable[[int, np.ndarray, BoundingBox], np.ndarray]
BoxTransform = Callable[[int, BoundingBox], BoundingBox | None]


def _paint(
    seq: MaskSequence, t: int, selected: set[int], transform: Transform, box_transform: BoxTransform
) -> Frame:
    """Frame t with every selected object's mask replaced by `transform(t, mask, box)`, painted on top."""
    frame = read_frame(seq, t)
    moving = [oid for oid in seq.frame_object_ids(t) if oid in selected and oid not in frame.boxes]
    if not moving and not any(oid in selected for oid in frame.boxes):
        return frame
    before = frame.id_map
    out = before.copy()
    out[np.isin(before, np.array(moving, dtype=np.int32))] = 0
    wanted: dict[int, np.ndarray] = {}
    for oid in moving:  # ascending ids: a higher id covers a lower one
        box = seq.box(t, oid)
        assert box is not None
        wanted[oid] = transform(t, before == oid, box)
        out[wanted[oid]] = oid
    for oid in list(frame.boxes):
        if oid in selected:
            moved = box_transform(t, frame.boxes[oid])
            if moved is None:
                del frame.boxes[oid]
            else:
                frame.boxes[oid] = moved
    for oid in seq.frame_object_ids(t):
        if oid in frame.boxes:
            continue
        target = wanted.get(oid, before == oid)
        if (target & (out != oid)).any():
            frame.occluded.add(oid)
    frame.id_map = out
    return frame


def _geometric(
    seq: MaskSequence, object_ids: Iterable[int] | None, transform: Transform, box_transform: BoxTransform
) -> MaskSequence:
    selected = _object_ids(seq, object_ids)
    frames = (_paint(seq, t, selected, transform, box_transform) for t in range(seq.num_frames))
    return _rebuild(seq, frames)


def translate(
    seq: MaskSequence,
    offset: tuple[float, float] | Trajectory,
    *,
    object_ids: Iterable[int] | None = None,
) -> MaskSequence:
    """Move objects by `offset` pixels (dx right, dy down): a constant (dx, dy) or a Trajectory of (dx, dy)
    keyframes. Offsets are rounded to whole pixels; masks are clipped to the frame. `object_ids`: None or
    empty moves every object."""
    path = _trajectory(offset, "offset", 2, seq.num_frames)
    shifts = np.rint(path.sample(seq.num_frames)).astype(np.int64)  # (T, 2)

    def transform(t: int, mask: np.ndarray, box: BoundingBox) -> np.ndarray:
        return _shift_mask(mask, int(shifts[t, 0]), int(shifts[t, 1]))

    def box_transform(t: int, box: BoundingBox) -> BoundingBox | None:
        dx, dy = int(shifts[t, 0]), int(shifts[t, 1])
        return _clip_box(box.x0 + dx, box.y0 + dy, box.x1 + dx, box.y1 + dy, seq.width, seq.height)

    return _geometric(seq, object_ids, transform, box_transform)


def _linear_edit(seq: MaskSequence, object_ids: Iterable[int] | None, matrices: np.ndarray) -> MaskSequence:
    identity = np.eye(2)

    def transform(t: int, mask: np.ndarray, box: BoundingBox) -> np.ndarray:
        if np.array_equal(matrices[t], identity):
            return mask
        return _warp_mask(mask, box, matrices[t])

    def box_transform(t: int, box: BoundingBox) -> BoundingBox | None:
        if np.abs(matrices[t]).max() == 0:
            return None
        return _warp_box(box, matrices[t], (0.0, 0.0), seq.width, seq.height)

    return _geometric(seq, object_ids, transform, box_transform)


def scale(
    seq: MaskSequence, factor: float | Trajectory, *, object_ids: Iterable[int] | None = None
) -> MaskSequence:
    """Resize objects by `factor` (> 0; a constant or a Trajectory of factors) about the centre of each
    object's box in each frame."""
    factors = _trajectory(factor, "factor", 1, seq.num_frames, positive=True).sample(seq.num_frames)
    factors = np.maximum(factors, 0.0)
    matrices = factors[:, None, None] * np.eye(2)[None]
    return _linear_edit(seq, object_ids, matrices)


def rotate(
    seq: MaskSequence, degrees: float | Trajectory, *, object_ids: Iterable[int] | None = None
) -> MaskSequence:
    """Rotate objects counter-clockwise (as seen on screen) by `degrees` (a constant or a Trajectory) about
    the centre of each object's box in each frame."""
    angles = np.deg2rad(_trajectory(degrees, "degrees", 1, seq.num_frames).sample(seq.num_frames))
    cos, sin = np.cos(angles), np.sin(angles)
    exact = np.isclose(np.mod(angles, 2 * np.pi), 0.0) | np.isclose(np.mod(angles, 2 * np.pi), 2 * np.pi)
    cos, sin = np.where(exact, 1.0, cos), np.where(exact, 0.0, sin)
    # y grows down, so a counter-clockwise turn on screen maps (dx, dy) to (c dx + s dy, -s dx + c dy)
    matrices = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # (T, 2, 2)
    return _linear_edit(seq, object_ids, matrices)


# -- morphology ------------------------------------------------------------------------------------------------


def _isqrt(values: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of non-negative int64s, exact (a float square root corrected by one step either way)."""
    roots = np.floor(np.sqrt(values.astype(np.float64))).astype(np.int64)
    roots -= roots * roots > values
    roots += (roots + 1) * (roots + 1) <= values
    return roots


def _disk_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of `radius` (pixels whose centre is within `radius` of a mask pixel's),
    outside the frame counted as empty. O(H * W) whatever the radius: for each pixel, the nearest mask pixel in
    its row lies `g` columns away; that row then reaches the rows within isqrt(radius^2 - g^2) in that column,
    an interval per pixel, and the intervals of a column are summed with a difference array."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if radius < 0 or h == 0 or w == 0 or not mask.any():
        return out
    radius = min(
        radius, math.isqrt(h * h + w * w) + 1
    )  # farther than the frame's diagonal reaches nothing more
    cols = np.arange(w, dtype=np.int64)
    far = np.int64(2 * (w + radius) + 2)
    left = np.maximum.accumulate(np.where(mask, cols, -far), axis=1)  # nearest mask column at or left of x
    right = np.minimum.accumulate(np.where(mask, cols, far)[:, ::-1], axis=1)[:, ::-1]  # ... at or right of x
    gap = np.minimum(cols - left, right - cols)  # (H, W) columns to the nearest mask pixel in the row
    rows, xs = np.nonzero(gap <= radius)
    reach = _isqrt(radius * radius - gap[rows, xs] ** 2)  # rows above and below that pixel's row reaches
    starts = np.maximum(rows - reach, 0)
    stops = np.minimum(rows + reach + 1, h)
    counts = np.bincount(starts * w + xs, minlength=(h + 1) * w)
    counts -= np.bincount(stops * w + xs, minlength=(h + 1) * w)
    covered = np.cumsum(counts.reshape(h + 1, w), axis=0)[:h] > 0
    out[covered] = True
    return out


def _crop(box: BoundingBox, margin: int, width: int, height: int) -> tuple[slice, slice]:
    x0, y0 = max(0, int(box.x0) - margin), max(0, int(box.y0) - margin)
    x1, y1 = min(width, math.ceil(box.x1) + margin), min(height, math.ceil(box.y1) + margin)
    return slice(y0, y1), slice(x0, x1)


def _morphology(
    seq: MaskSequence, radius_pixels: int, object_ids: Iterable[int] | None, grow: bool
) -> MaskSequence:
    radius = min(check_int(radius_pixels, "radius_pixels", minimum=1), max_radius(seq.width, seq.height))
    selected = _object_ids(seq, object_ids)

    def frames() -> Iterator[Frame]:
        for t in range(seq.num_frames):
            frame = read_frame(seq, t)
            before = frame.id_map
            out = before.copy()
            for oid in seq.frame_object_ids(t):
                if oid not in selected:
                    continue
                box = seq.box(t, oid)
                assert box is not None
                if oid in frame.boxes:
                    r = radius if grow else -radius
                    moved = _clip_box(box.x0 - r, box.y0 - r, box.x1 + r, box.y1 + r, seq.width, seq.height)
                    if moved is None:
                        del frame.boxes[oid]
                    else:
                        frame.boxes[oid] = moved
                    continue
                # Work on the box grown by the radius (+1 so erosion sees the pixels just outside the mask).
                rows, cols = _crop(box, radius + 1, seq.width, seq.height)
                mask = before[rows, cols] == oid
                if grow:
                    grown = _disk_dilate(mask, radius) & (before[rows, cols] == 0) & (out[rows, cols] == 0)
                    out[rows, cols][grown] = oid
                else:
                    # A pixel goes when non-mask lies within the radius. `_disk_dilate` counts the outside of
                    # the crop as empty: at the frame edge that makes the outside of the frame count as mask;
                    # elsewhere the crop's margin is wider than the radius, so nothing is lost.
                    out[rows, cols][mask & _disk_dilate(~mask, radius)] = 0
            frame.id_map = out
            yield frame

    return _rebuild(seq, frames())


def max_radius(width: int, height: int) -> int:
    """The largest radius that still changes anything in a width x height frame: past the frame's diagonal a
    disk reaches no more pixels, so `dilate` and `erode` use this for any larger radius."""
    return math.isqrt(width * width + height * height) + 1


def dilate(seq: MaskSequence, radius_pixels: int, *, object_ids: Iterable[int] | None = None) -> MaskSequence:
    """Grow masks by a disk of `radius_pixels` (>= 1), into background pixels only."""
    return _morphology(seq, radius_pixels, object_ids, grow=True)


def erode(seq: MaskSequence, radius_pixels: int, *, object_ids: Iterable[int] | None = None) -> MaskSequence:
    """Shrink masks by a disk of `radius_pixels` (>= 1); freed pixels become background."""
    return _morphology(seq, radius_pixels, object_ids, grow=False)


# -- time ----------------------------------------------------------------------------------------------------------


def _ratio(value: float) -> Fraction:
    return Fraction(value).limit_denominator(_MAX_RATIO_DENOMINATOR)


def retime_num_frames(num_frames: int, speed: float) -> int:
    """Frames `retime` gives for a sequence of `num_frames` at `speed`: ceil(num_frames / speed)."""
    speed = check_number(speed, "speed", positive=True)
    ratio = _ratio(speed)
    if ratio == 0:
        raise FieldError("speed", f"must be at least 1/{_MAX_RATIO_DENOMINATOR}, got {speed:g}")
    return max(1, math.ceil(num_frames / ratio))


def retime(seq: MaskSequence, speed: float) -> MaskSequence:
    """Play the motion `speed` (> 0) times as fast at the same fps: frame i shows source frame
    floor(i * speed); the result has ceil(num_frames / speed) frames (2: half the frames; 0.5: each twice)."""
    count = retime_num_frames(seq.num_frames, speed)
    ratio = _ratio(speed)
    return _reindexed(seq, (min(math.floor(i * ratio), seq.num_frames - 1) for i in range(count)))


def _fps_fraction(fps: float) -> Fraction:
    """`fps` as a fraction: the nearest with a denominator up to 10^6 (1/3 stays exact), or the exact one for a
    rate too small for that (never 0 for fps > 0)."""
    return Fraction(fps).limit_denominator(1_000_000) or Fraction(fps)


def fps_ratio(fps: float, new_fps: float) -> Fraction:
    """Source frames per output frame when `fps` is resampled to `new_fps`, as an exact fraction: output
    frame i shows source frame floor(i * ratio)."""
    return _fps_fraction(fps) / _fps_fraction(new_fps)


def check_fps(fps: float, field: str = "fps") -> float:
    """`fps` when it is a frame rate to resample to: finite and at least `MIN_FPS`; else FieldError at `field`."""
    value = check_number(fps, field, positive=True)
    if value < MIN_FPS:
        raise FieldError(field, f"must be at least {MIN_FPS:g} frames per second, got {value:g}")
    return value


def resample_num_frames(num_frames: int, fps: float, new_fps: float) -> int:
    """Frames `resample_fps` gives: the same duration at `new_fps` (>= `MIN_FPS`), ceil(num_frames * new_fps /
    fps). Only counts (a huge rate gives a huge count, for the caller's size limit to refuse)."""
    new_fps = check_fps(new_fps)
    fps = check_number(fps, "fps", positive=True)  # a sequence's own rate, checked when it was made
    return max(1, math.ceil(num_frames / fps_ratio(fps, new_fps)))


def resample_fps(seq: MaskSequence, fps: float) -> MaskSequence:
    """The same motion at `fps` frames per second (> 0), keeping the duration: frame i shows the source frame
    shown at time i / fps (nearest earlier frame)."""
    count = resample_num_frames(seq.num_frames, seq.fps, fps)
    ratio = fps_ratio(seq.fps, fps)
    indices = (min(math.floor(i * ratio), seq.num_frames - 1) for i in range(count))
    return _reindexed(seq, indices, fps=float(fps))


def reverse(seq: MaskSequence) -> MaskSequence:
    """The frames in reverse order."""
    return _reindexed(seq, range(seq.num_frames - 1, -1, -1))


def trim(seq: MaskSequence, start_frame: int = 0, end_frame: int | None = None) -> MaskSequence:
    """Keep frames [start_frame, end_frame) (end None: to the end)."""
    n = seq.num_frames
    start = check_int(start_frame, "start_frame", minimum=0)
    if start >= n:
        raise FieldError("start_frame", f"must be < num_frames ({n}), got {start}")
    end = n if end_frame is None else check_int(end_frame, "end_frame")
    if end <= start:
        raise FieldError("end_frame", f"must be > start_frame ({start}), got {end}")
    if end > n:
        raise FieldError("end_frame", f"must be <= num_frames ({n}), got {end}")
    return _reindexed(seq, range(start, end))


def _loop_index(i: int, n: int, ping_pong: bool) -> int:
    if not ping_pong or n == 1:
        return i % n
    phase = i % (2 * (n - 1))
    return phase if phase < n else 2 * (n - 1) - phase


def loop_num_frames(
    num_frames: int,
    repeat_count: int | None = None,
    target_num_frames: int | None = None,
    ping_pong: bool = False,
) -> int:
    """Frames `loop` gives: `target_num_frames`, or `repeat_count` plays (ping-pong plays after the first
    share their turning frame with the previous one)."""
    if (repeat_count is None) == (target_num_frames is None):
        raise FieldError("repeat_count", "give exactly one of repeat_count and target_num_frames")
    if target_num_frames is not None:
        return check_int(target_num_frames, "target_num_frames", minimum=1)
    count = check_int(repeat_count, "repeat_count", minimum=1)
    if ping_pong and num_frames > 1:
        return num_frames + (count - 1) * (num_frames - 1)
    return count * num_frames


def loop(
    seq: MaskSequence,
    repeat_count: int | None = None,
    *,
    target_num_frames: int | None = None,
    ping_pong: bool = False,
) -> MaskSequence:
    """Repeat the sequence: `repeat_count` plays (>= 1) or exactly `target_num_frames` frames (the last play
    cut); `ping_pong` alternates forward and backward plays (0 1 2 1 0 1 2 ...)."""
    n = seq.num_frames
    count = loop_num_frames(n, repeat_count, target_num_frames, ping_pong)
    return _reindexed(seq, (_loop_index(i, n, ping_pong) for i in range(count)))


def time_warp(seq: MaskSequence, source_frames: Trajectory, num_frames: int | None = None) -> MaskSequence:
    """Remap time: frame t of the result shows source frame `source_frames(t)` (rounded half to even, clamped
    to the sequence). Keyframe values must be frame indices of `seq`; `num_frames` (None: the last keyframe's
    frame + 1) is the length of the result, e.g. `Trajectory([(0, 0), (20, 9), (30, 0)])` plays 10 frames
    slowly forward, then quickly back."""
    if not isinstance(source_frames, Trajectory):
        raise FieldError("source_frames", f"must be a Trajectory, got {type(source_frames).__name__}")
    if source_frames.dims != 1:
        raise FieldError("source_frames", "keyframe values must be single numbers (source frame indices)")
    source_frames.check_values("source_frames", minimum=0, maximum=seq.num_frames - 1)
    count = (
        source_frames.last_frame + 1 if num_frames is None else check_int(num_frames, "num_frames", minimum=1)
    )
    values = np.clip(np.rint(source_frames.sample(count)), 0, seq.num_frames - 1).astype(np.int64)
    return _reindexed(seq, (int(v) for v in values))
