"""Procedural mask sequences: shapes moving along keyframed trajectories, so motion can be drawn without any
video (MVideo's mask condition from a sketch).

    ball = SyntheticObject("circle", Trajectory([(0, (10, 10)), (15, (50, 40))]), width=12, label="ball")
    seq = synthesize([ball], width=64, height=48, num_frames=16, fps=8)
    dog = MaskTemplate.from_sequence(extracted, object_id=1, frame_index=0)    # a mask as the shape
    seq = synthesize([SyntheticObject(dog, (32, 24), scale=Trajectory([(0, 1.0), (15, 0.5)]))], ...)

Shapes (sizes in pixels, before `scale` and `rotation`):
- "circle": a disk of diameter `width`;
- "square": an axis-aligned square of side `width`;
- "ellipse": axes `width` (x) and `height` (y; None or 0: `width`);
- a `MaskTemplate`: the mask of one object in one frame of another sequence, cropped to its box, the box
  resized to `width` x `height` (None or 0: its own size); its label is the default label.

Rasterisation (*our* choice): a pixel belongs to the shape when its centre (x + 0.5, y + 0.5), mapped back
through the frame's rotation (counter-clockwise on screen, y down) and scale about the shape's centre, lies
inside the shape: the disk and ellipse boundaries are inclusive, the square's and the template's are
half-open ([-w/2, w/2)), so a square of side 10 centred on a pixel corner covers exactly 10 x 10 pixels. Parts
outside the frame are cut. Objects get ids 1..n in order and score 1; a later object covers an earlier one
(the covered one is flagged OCCLUDED in that frame, absent if nothing of it is left).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from generation.masks.trajectory import FieldError, Trajectory, check_int, check_number
from libs.media import MaskObject, MaskSequence, MaskSequenceBuilder

__all__ = ["SHAPES", "MaskTemplate", "ShapeName", "SyntheticObject", "draw_shape", "synthesize"]

ShapeName = Literal["circle", "square", "ellipse"]
SHAPES: tuple[ShapeName, ...] = ("circle", "square", "ellipse")


@dataclass(frozen=True, eq=False)
class MaskTemplate:
    """A boolean mask used as a shape: `mask` (h, w) is cropped to its box; `label` names it."""

    mask: np.ndarray = field(repr=False)
    label: str = ""

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or mask.dtype != np.bool_:
            raise FieldError("mask", f"must be a 2-D boolean array, got {mask.dtype} {mask.shape}")
        if not mask.any():
            raise FieldError("mask", "is empty")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        object.__setattr__(self, "mask", mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy())

    @classmethod
    def from_sequence(cls, seq: MaskSequence, object_id: int, frame_index: int) -> MaskTemplate:
        """The mask of object `object_id` in frame `frame_index` of `seq` (it must have pixels there)."""
        oid = check_int(object_id, "object_id", minimum=1)
        if oid not in seq.object_ids:
            raise FieldError(
                "object_id", f"unknown object id {oid}; the sequence has ids {list(seq.object_ids)}"
            )
        t = check_int(frame_index, "frame_index", minimum=0)
        if t >= seq.num_frames:
            raise FieldError("frame_index", f"must be < num_frames ({seq.num_frames}), got {t}")
        mask = seq.mask(t, oid)
        if not mask.any():
            raise FieldError("frame_index", f"object {oid} has no mask pixels in frame {t}")
        return cls(mask, seq.object(oid).label)

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])


@dataclass(frozen=True)
class SyntheticObject:
    """One drawn object: a shape, its centre per frame (a Trajectory of points or a constant (x, y)), its
    size, and optional per-frame scale (> 0) and rotation (degrees) as constants or scalar Trajectories."""

    shape: ShapeName | MaskTemplate
    center: Trajectory | tuple[float, float]
    width: float | None = None
    height: float | None = None
    scale: Trajectory | float = 1.0
    rotation: Trajectory | float = 0.0
    label: str | None = None


@dataclass(frozen=True)
class _Plan:
    shape: ShapeName | MaskTemplate
    width: float
    height: float
    centers: np.ndarray  # (T, 2)
    scales: np.ndarray  # (T,)
    angles: np.ndarray  # (T,) degrees
    label: str


def draw_shape(
    shape: ShapeName | MaskTemplate,
    width: float,
    height: float,
    center: tuple[float, float],
    frame_size: tuple[int, int],
    *,
    scale: float = 1.0,
    degrees: float = 0.0,
) -> np.ndarray:
    """The (H, W) bool mask of one shape in one frame (frame_size = (width, height)); see the module docstring."""
    frame_w, frame_h = frame_size
    out = np.zeros((frame_h, frame_w), dtype=bool)
    if scale <= 0 or width <= 0 or height <= 0:
        return out
    cx, cy = float(center[0]), float(center[1])
    reach = 0.5 * math.hypot(width, height) * scale + 1.0
    x0, x1 = max(0, math.floor(cx - reach)), min(frame_w, math.ceil(cx + reach))
    y0, y1 = max(0, math.floor(cy - reach)), min(frame_h, math.ceil(cy + reach))
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1]
    px, py = xs + 0.5 - cx, ys + 0.5 - cy
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # inverse of the on-screen counter-clockwise turn (y down), then of the scale
    u = (cos * px - sin * py) / scale
    v = (sin * px + cos * py) / scale
    half_w, half_h = width / 2.0, height / 2.0
    if isinstance(shape, MaskTemplate):
        tx = np.floor((u + half_w) * shape.width / width).astype(np.int64)
        ty = np.floor((v + half_h) * shape.height / height).astype(np.int64)
        inside = (tx >= 0) & (tx < shape.width) & (ty >= 0) & (ty < shape.height)
        inside[inside] = shape.mask[ty[inside], tx[inside]]
    elif shape == "square":
        inside = (u >= -half_w) & (u < half_w) & (v >= -half_w) & (v < half_w)
    elif shape == "circle":
        inside = u * u + v * v <= half_w * half_w
    else:
        inside = (u / half_w) ** 2 + (v / half_h) ** 2 <= 1.0
    out[y0:y1, x0:x1] = inside
    return out


def _plan(obj: SyntheticObject, num_frames: int) -> _Plan:
    shape = obj.shape
    if isinstance(shape, MaskTemplate):
        width = shape.width if not obj.width else check_number(obj.width, "width", positive=True)
        height = shape.height if not obj.height else check_number(obj.height, "height", positive=True)
        default_label = shape.label
    else:
        if shape not in SHAPES:
            raise FieldError("shape", f"must be one of {', '.join(SHAPES)} or a MaskTemplate, got {shape!r}")
        if obj.width is None:
            raise FieldError("width", f"a {shape} needs a size in pixels")
        width = check_number(obj.width, "width", positive=True)
        height = width
        if shape == "ellipse" and obj.height:
            height = check_number(obj.height, "height", positive=True)
        default_label = shape
    center = obj.center if isinstance(obj.center, Trajectory) else _constant_point(obj.center)
    if center.dims != 2:
        raise FieldError("center", "keyframe values must be (x, y) points")
    center.check_frames(num_frames, "center")
    scale = obj.scale if isinstance(obj.scale, Trajectory) else Trajectory.constant(obj.scale)
    if scale.dims != 1:
        raise FieldError("scale", "keyframe values must be single numbers")
    scale.check_frames(num_frames, "scale")
    scale.check_values("scale", positive=True)
    rotation = obj.rotation if isinstance(obj.rotation, Trajectory) else Trajectory.constant(obj.rotation)
    if rotation.dims != 1:
        raise FieldError("rotation", "keyframe values must be single numbers (degrees)")
    rotation.check_frames(num_frames, "rotation")
    label = default_label if obj.label is None else obj.label
    if not isinstance(label, str):
        raise FieldError("label", f"must be a string, got {label!r}")
    return _Plan(
        shape=shape,
        width=width,
        height=height,
        centers=center.sample(num_frames),
        scales=scale.sample(num_frames),
        angles=rotation.sample(num_frames),
        label=label,
    )


def _constant_point(value: object) -> Trajectory:
    try:
        x, y = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise FieldError("center", f"must be (x, y) or a Trajectory of points, got {value!r}") from None
    return Trajectory.constant((check_number(x, "center.x"), check_number(y, "center.y")))


def synthesize(
    objects: Sequence[SyntheticObject], *, width: int, height: int, num_frames: int, fps: float
) -> MaskSequence:
    """Draw `objects` (ids 1..n, later on top) into `num_frames` frames of `width` x `height` at `fps`.

    Errors name the argument: `width`, `num_frames`, `objects[2].center.keyframes[1].frame_index`, ...
    """
    width = check_int(width, "width", minimum=1)
    height = check_int(height, "height", minimum=1)
    num_frames = check_int(num_frames, "num_frames", minimum=1)
    fps = check_number(fps, "fps", positive=True)
    if not objects:
        raise FieldError("objects", "give at least one object to draw")
    plans = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, SyntheticObject):
            raise FieldError(f"objects[{i}]", f"must be a SyntheticObject, got {type(obj).__name__}")
        try:
            plans.append(_plan(obj, num_frames))
        except FieldError as error:
            raise error.prefixed(f"objects[{i}]") from None
    builder = MaskSequenceBuilder(width, height, fps)
    for t in range(num_frames):
        id_map = np.zeros((height, width), dtype=np.int32)
        drawn = np.zeros(len(plans) + 1, dtype=np.int64)  # pixels each object was drawn with
        for oid, plan in enumerate(plans, start=1):
            mask = draw_shape(
                plan.shape,
                plan.width,
                plan.height,
                plan.centers[t],
                (width, height),
                scale=float(plan.scales[t]),
                degrees=float(plan.angles[t]),
            )
            id_map[mask] = oid
            drawn[oid] = int(mask.sum())
        kept = np.bincount(id_map.ravel(), minlength=len(plans) + 1)
        occluded = [oid for oid in range(1, len(plans) + 1) if 0 < kept[oid] < drawn[oid]]
        builder.add_frame(id_map, occluded=occluded)
    return builder.build([MaskObject(oid, plan.label, 1.0) for oid, plan in enumerate(plans, start=1)])
