"""The shapes world: captioned synthetic videos of coloured shapes with exact per-object masks.

    world = ShapesWorld()                      # 32x32, 8 frames, one to three objects
    sample = world.sample(seed=7)              # deterministic in the seed
    sample.video                               # (T, H, W, 3) uint8
    sample.caption                             # "a red circle and a blue square"
    sample.masks                               # libs.media MaskSequence, object ids 1..n in caption order
    sample.slot_masks(num_slots=3)             # (T, 3, H, W) bool: slot k = the k-th object named in the caption
    ShapesWorld(motion="circular").sample(7, split="eval")   # a held-out motion family (motions.py)

Our choices:

- **Objects** are one to three shapes (circle, square, triangle, diamond) of distinct, saturated colours (red,
  green, blue, yellow, cyan, magenta). By default (`motion="bounce"`, the training data) each moves at a constant
  velocity and bounces off the frame edges; the other motion families (`motions.MOTION_FAMILIES`: fast,
  zig-zag, circular, crossing, entering the frame, stop-and-reverse, small, large) are held out for evaluation.
  Later objects are drawn over earlier ones; a pixel belongs to the object drawn last over it.
- **Backgrounds** are muted (dark or light grey with a faint tint), solid or a gentle linear gradient (at most
  `gradient_amplitude` change across the frame), so "pixels far from the background colour" segments the objects
  of any colour and every object colour is far from every background.
- **Exact masks.** The frame is rendered *from* the object-id map (no anti-aliasing): object pixels carry exactly
  the object's colour and background pixels are background, so the masks are exact by construction.
- **Captions** name each object's colour and shape in drawing order: "a red circle", "a red circle and a blue
  square", "a red circle, a blue square and a green triangle". Slot k of the mask condition is the k-th object
  named; `MaskObject.label` is its "colour shape" phrase.
- **Splits.** `sample(seed)` draws from `numpy.random.default_rng(SeedSequence([split_key, seed]))`; training and
  evaluation use different `split` names (`"train"`, `"eval"`), so held-out samples never occur in training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from generation.mvideo.shapes.motions import MOTION_FAMILIES, PathContext
from libs.media import MaskObject, MaskSequence

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 55),
    "blue": (40, 75, 235),
    "yellow": (240, 220, 35),
    "cyan": (35, 210, 225),
    "magenta": (220, 45, 220),
}
"""Object colours (RGB uint8), named as in captions."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Shape names, as in captions."""

CAPTION_WORDS: tuple[str, ...] = ("a", "and", ",", *COLORS, *SHAPES)
"""Every word (and punctuation token) a shapes-world caption uses."""


@dataclass(frozen=True)
class ShapeObject:
    """One object of a sample: its colour and shape names, radius (pixels) and per-frame centres (x, y)."""

    color: str
    shape: str
    radius: float
    centers: tuple[tuple[float, float], ...]

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLORS[self.color]


@dataclass(frozen=True)
class ShapesSample:
    """One captioned video with exact masks; object ids are 1..n in caption (and slot) order."""

    video: np.ndarray  # (T, H, W, 3) uint8
    id_maps: np.ndarray  # (T, H, W) int32, 0 = background, k = k-th object of the caption
    caption: str
    objects: tuple[ShapeObject, ...]
    background: np.ndarray  # (T, H, W, 3) float32 in [0, 255]: the frame with no objects drawn
    fps: float = 8.0
    seed: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    @property
    def masks(self) -> MaskSequence:
        """The per-object mask sequence (libs.media), labels "colour shape"."""
        labels = [MaskObject(k + 1, obj.phrase, 1.0) for k, obj in enumerate(self.objects)]
        return MaskSequence.from_id_maps(self.id_maps, labels, self.fps)

    def slot_masks(self, num_slots: int = 3) -> np.ndarray:
        """(T, num_slots, H, W) bool: slot k is the mask of object k + 1 (empty when there are fewer objects)."""
        if len(self.objects) > num_slots:
            raise ValueError(f"sample has {len(self.objects)} objects but only {num_slots} mask slots")
        ids = np.arange(1, num_slots + 1, dtype=self.id_maps.dtype)
        return self.id_maps[:, None, :, :] == ids[None, :, None, None]


@dataclass(frozen=True)
class ShapesWorld:
    """Generator of shapes-world samples; every field is a knob of the data distribution."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    fps: float = 8.0
    min_objects: int = 1
    max_objects: int = 3
    object_count_weights: tuple[float, ...] | None = None
    """Relative frequencies of min_objects..max_objects objects (None: uniform)."""
    colors: tuple[str, ...] = tuple(COLORS)
    shapes: tuple[str, ...] = SHAPES
    radius_range: tuple[float, float] = (0.1, 0.17)
    """Object radius as a fraction of min(height, width)."""
    speed_range: tuple[float, float] = (0.02, 0.06)
    """Pixels per frame as a fraction of min(height, width)."""
    gradient_probability: float = 0.5
    gradient_amplitude: float = 24.0
    """Largest change of a background channel across the frame (uint8 units)."""
    background_levels: tuple[tuple[float, float], ...] = field(default=((30.0, 80.0), (170.0, 215.0)))
    """Grey-level ranges a background is drawn from (dark or light), before its faint tint."""
    background_tint: float = 12.0
    motion: str = "bounce"
    """Motion family (`MOTION_FAMILIES`): "bounce" is the training motion, the others are held out."""

    def __post_init__(self) -> None:
        if self.motion not in MOTION_FAMILIES:
            raise ValueError(f"unknown motion {self.motion!r}; known: {list(MOTION_FAMILIES)}")
        if MOTION_FAMILIES[self.motion].min_objects > self.max_objects:
            raise ValueError(
                f"motion {self.motion!r} needs at least {MOTION_FAMILIES[self.motion].min_objects} objects, "
                f"max_objects is {self.max_objects}"
            )
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if self.max_objects > len(self.colors):
            raise ValueError(
                f"max_objects {self.max_objects} exceeds the {len(self.colors)} distinct colours"
            )
        unknown = [c for c in self.colors if c not in COLORS] + [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise ValueError(f"unknown colours/shapes {unknown}; known: {list(COLORS)}, {list(SHAPES)}")
        weights = self.object_count_weights
        if weights is not None and (
            len(weights) != self.max_objects - self.min_objects + 1 or min(weights) < 0 or sum(weights) <= 0
        ):
            raise ValueError(
                f"object_count_weights needs {self.max_objects - self.min_objects + 1} weights >= 0"
            )
        if self.height < 8 or self.width < 8 or self.num_frames < 1:
            raise ValueError("frames must be at least 8x8 and there must be at least one frame")

    def rng(self, seed: int, split: str = "train") -> np.random.Generator:
        """The generator that `sample(seed, split)` draws from."""
        key = int.from_bytes(hashlib.sha256(split.encode()).digest()[:8], "little")
        return np.random.default_rng(np.random.SeedSequence([key, int(seed)]))

    def sample(self, seed: int, split: str = "train") -> ShapesSample:
        """One sample, a pure function of (this world, seed, split)."""
        rng = self.rng(seed, split)
        if self.object_count_weights is None:
            n = int(rng.integers(self.min_objects, self.max_objects + 1))
        else:
            p = np.asarray(self.object_count_weights, dtype=np.float64)
            n = self.min_objects + int(rng.choice(len(p), p=p / p.sum()))
        family = MOTION_FAMILIES[self.motion]
        n = max(n, family.min_objects)
        radius_range = family.radius_range or self.radius_range
        speed_range = family.speed_range or self.speed_range
        colors = rng.choice(len(self.colors), size=n, replace=False)
        side = float(min(self.height, self.width))
        objects = []
        for k in range(n):
            shape = self.shapes[int(rng.integers(len(self.shapes)))]
            radius = float(rng.uniform(*radius_range)) * side
            context = PathContext(
                self.width, self.height, self.num_frames, radius, speed_range, [o.centers for o in objects]
            )
            centers = family.path(rng, context)
            objects.append(ShapeObject(self.colors[int(colors[k])], shape, radius, centers))
        background = self._background(rng)
        id_maps = np.zeros((self.num_frames, self.height, self.width), dtype=np.int32)
        for t in range(self.num_frames):
            for k, obj in enumerate(objects):
                id_maps[t][shape_mask(obj.shape, obj.centers[t], obj.radius, self.height, self.width)] = k + 1
        video = np.repeat(background[None], self.num_frames, axis=0)  # (T, H, W, 3)
        palette = np.array([(0, 0, 0)] + [o.rgb for o in objects], dtype=np.float32)
        fg = id_maps > 0
        video[fg] = palette[id_maps[fg]]
        return ShapesSample(
            video=np.clip(np.rint(video), 0, 255).astype(np.uint8),
            id_maps=id_maps,
            caption=caption_for([o.phrase for o in objects]),
            objects=tuple(objects),
            background=np.repeat(background[None], self.num_frames, axis=0),
            fps=self.fps,
            seed=int(seed),
        )

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) float32: a muted solid colour or a gentle linear gradient around it."""
        low, high = self.background_levels[int(rng.integers(len(self.background_levels)))]
        base = float(rng.uniform(low, high)) + rng.uniform(
            -self.background_tint, self.background_tint, size=3
        )
        image = np.broadcast_to(base.astype(np.float32), (self.height, self.width, 3)).copy()
        if rng.random() < self.gradient_probability:
            angle = float(rng.uniform(0.0, 2.0 * np.pi))
            yy, xx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
            ramp = (np.cos(angle) * xx / (self.width - 1) + np.sin(angle) * yy / (self.height - 1)) - 0.5
            ramp = ramp / max(float(np.abs(ramp).max()), 1e-6) * 0.5  # in [-0.5, 0.5]
            amplitude = rng.uniform(0.4, 1.0, size=3) * self.gradient_amplitude
            image = image + ramp[..., None] * amplitude.astype(np.float32)
        return np.clip(image, 0.0, 255.0).astype(np.float32)


def caption_for(phrases: list[str]) -> str:
    """ "a red circle", "a red circle and a blue square", "a red circle, a blue square and a green triangle"."""
    if not phrases:
        raise ValueError("a caption needs at least one object")
    items = [f"a {p}" for p in phrases]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def parse_caption(caption: str) -> list[tuple[str, str]]:
    """(colour, shape) of each object a shapes-world caption names, in order; words it does not know are skipped."""
    words = caption.lower().replace(",", " , ").split()
    found = []
    for prev, word in zip(words, words[1:], strict=False):
        if prev in COLORS and word in SHAPES:
            found.append((prev, word))
    return found


def shape_mask(shape: str, center: tuple[float, float], radius: float, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the pixels whose centres fall inside `shape` of circumradius-ish `radius` at `center`."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx + 0.5 - center[0], yy + 0.5 - center[1]
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half = radius * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius * 1.15
    if shape == "triangle":
        # Upward-pointing isosceles triangle: apex at (0, -r), base from (-r, 0.8r) to (r, 0.8r).
        top, bottom = -radius, 0.8 * radius
        inside_y = (dy >= top) & (dy <= bottom)
        half_width = radius * (dy - top) / (bottom - top)
        return inside_y & (np.abs(dx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}; known: {list(SHAPES)}")
