"""The mask sequence: T frames of H x W object-id maps plus per-object metadata (MVideo's motion condition).

    builder = MaskSequenceBuilder(width=256, height=256, fps=24)
    for id_map in extractor_output:          # (H, W) ints, 0 = background, or {object_id: bool mask}
        builder.add_frame(id_map)
    seq = builder.build([MaskObject(1, "dog", 0.9)])
    seq.id_map(0), seq.mask(3, 1), seq.box(3, 1)

Our choices (the papers leave them open):

- **One owner per pixel.** A frame is an object-id map: each pixel belongs to at most one object (or to the
  background, id 0), which is what a channel-wise mask condition can express. Masks given per object that
  overlap are an error unless the builder is told how to resolve them (`on_overlap="first_wins"`: the
  earlier object in the mapping keeps the pixel; `"last_wins"`: the later one takes it).
- **Compact storage.** Each object's mask in each frame is kept as COCO compressed RLE bytes (pycocotools),
  never as a dense T x H x W array: a 1,000-frame 256 x 256 sequence of one moving disc takes a few tens of
  kilobytes (`nbytes`). Frames are decoded on access; `to_dense()` is for small sequences only.
- **Sparse frames.** An object is present in a frame when it has a non-empty mask there, or (rarely, from
  detectors) only a box. Otherwise it is absent: `visible(t, id)` is False, `box(t, id)` is None and
  per-frame data given for it (score, occlusion flag) is dropped. Boxes are computed from masks
  (x0, y0 inclusive, x1, y1 exclusive, as in `kmono.common.v1.BoundingBox`).
- **Canonical values.** Objects are kept sorted by id; `fps` and scores are rounded to the nearest float32
  (shown as its shortest decimal, so 29.97 stays 29.97) because the proto carries them as float32; with
  that, every codec round trip is exact and equality is exact.
- **Immutable.** Editing (generation/masks) builds new sequences through `MaskSequenceBuilder`.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from libs.media import rle as _rle

MAX_OBJECT_ID = 2**31 - 1
"""Largest object id (the proto stores ids as int32)."""

DEFAULT_MAX_DENSE_BYTES = 1 << 30
"""`MaskSequence.to_dense` refuses to allocate more than this unless told otherwise."""

OverlapPolicy = Literal["error", "first_wins", "last_wins"]
_OVERLAP_POLICIES = ("error", "first_wins", "last_wins")
# Above this id, counting pixels per id with bincount would allocate too much; np.unique is used instead.
_BINCOUNT_MAX_ID = 1 << 16


def describe_value(value: Any) -> str:
    """A value for an error message without echoing outside text: numbers as they are, anything else by type
    (a mask file may be one the caller cannot read; its strings never come back in errors)."""
    if value is None or isinstance(value, bool | int | float | np.integer | np.floating | np.bool_):
        text = repr(value.item() if isinstance(value, np.generic) else value)
        return text if len(text) <= 32 else f"{text[:29]}..."
    return f"a {type(value).__name__}"


def to_float32(value: Any, what: str) -> float:
    """`value` rounded to the nearest float32, as its shortest decimal (29.97 -> 29.97); must be finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {describe_value(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {number}")
    return float(str(np.float32(number)))


def _as_int(value: Any, what: str, expected: str = "an integer") -> int:
    """`value` as an int (Python or numpy integers, not bools), else ValueError "{what} must be {expected}"."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{what} must be {expected}, got {describe_value(value)}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be {expected}, got {describe_value(value)}") from None


def check_object_id(value: Any, what: str = "object id") -> int:
    """`value` as a valid object id (an int in [1, 2**31 - 1]), else ValueError naming `what`."""
    oid = _as_int(value, what)
    if oid == 0:
        raise ValueError(f"{what} 0 is reserved for the background; object ids start at 1")
    if not 0 < oid <= MAX_OBJECT_ID:
        raise ValueError(f"{what} must be in [1, {MAX_OBJECT_ID}], got {oid}")
    return oid


def _check_size(value: Any, what: str) -> int:
    size = _as_int(value, what, "a positive integer")
    if size <= 0:
        raise ValueError(f"{what} must be a positive integer, got {size}")
    return size


def _check_fps(fps: Any) -> float:
    value = to_float32(fps, "fps")
    if value <= 0:
        raise ValueError(f"fps must be > 0, got {value}")
    return value


def _check_score(score: Any, what: str) -> float:
    value = to_float32(score, what)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value}")
    return value


class Visibility(enum.IntEnum):
    """How an object is seen in a frame (numbers as in `kmono.common.v1.Visibility`)."""

    VISIBLE = 1
    OCCLUDED = 2
    """Present but partly hidden; the mask covers only the visible part."""
    ABSENT = 3


class BoundingBox(NamedTuple):
    """Axis-aligned box in pixels: (x0, y0) top-left inclusive, (x1, y1) bottom-right exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def to_xywh(self) -> tuple[float, float, float, float]:
        """The COCO form [x, y, width, height]."""
        return self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> BoundingBox:
        return cls(x, y, x + w, y + h)


def _check_box(box: Any, what: str) -> BoundingBox:
    try:
        values = [to_float32(v, what) for v in box]
    except TypeError:
        raise ValueError(f"{what} must be 4 numbers (x0, y0, x1, y1), got {describe_value(box)}") from None
    if len(values) != 4:
        raise ValueError(f"{what} must be 4 numbers (x0, y0, x1, y1), got {len(values)}")
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{what} must have x0 <= x1 and y0 <= y1, got {tuple(values)}")
    return BoundingBox(x0, y0, x1, y1)


@dataclass(frozen=True)
class MaskObject:
    """One tracked object: its id (> 0, unique in the sequence), label (class or query phrase), best score."""

    id: int
    label: str = ""
    score: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", check_object_id(self.id))
        if not isinstance(self.label, str):
            raise ValueError(f"label of object {self.id} must be a str, got {type(self.label).__name__}")
        object.__setattr__(self, "score", _check_score(self.score, f"score of object {self.id}"))


@dataclass(frozen=True, slots=True)
class _Entry:
    """One object in one frame: its compressed RLE (None when only a box is known) and per-frame data."""

    counts: bytes | None
    area: int
    box: BoundingBox | None  # only for box-only entries; mask boxes are computed from `counts`
    occluded: bool
    score: float


class MaskSequence:
    """T frames of H x W object-id maps plus per-object metadata; immutable, stored as per-object RLE.

    Build one with `MaskSequenceBuilder` (frame by frame) or `MaskSequence.from_id_maps`; read and write
    it with `libs.media.save` / `libs.media.load` or the codec functions. Frame indices are 0-based.
    """

    __slots__ = ("_width", "_height", "_fps", "_objects", "_by_id", "_frames")

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: float,
        objects: Iterable[MaskObject],
        frames: Iterable[Mapping[int, _Entry]],
    ) -> None:
        """Low-level constructor used by the builder; prefer `MaskSequenceBuilder` or `from_id_maps`."""
        self._width = _check_size(width, "width")
        self._height = _check_size(height, "height")
        self._fps = _check_fps(fps)
        objects = list(objects)
        for obj in objects:
            if not isinstance(obj, MaskObject):
                raise ValueError(f"objects must be MaskObject instances, got {type(obj).__name__}")
        by_id: dict[int, MaskObject] = {}
        for obj in objects:
            if obj.id in by_id:
                raise ValueError(f"duplicate object id {obj.id} in objects")
            by_id[obj.id] = obj
        self._objects = tuple(sorted(objects, key=lambda o: o.id))
        self._by_id = by_id
        self._frames = tuple(dict(sorted(frame.items())) for frame in frames)
        if not self._frames:
            raise ValueError("a mask sequence needs at least one frame, got 0")
        seen: set[int] = set()
        for frame in self._frames:
            seen.update(frame)
        unknown = sorted(seen - by_id.keys())
        if unknown:
            raise ValueError(f"frames contain object ids {unknown} that are not in objects {sorted(by_id)}")

    # -- constructors ---------------------------------------------------------------------------------

    @classmethod
    def from_id_maps(
        cls,
        id_maps: np.ndarray | Iterable[np.ndarray],
        objects: Iterable[MaskObject] | None,
        fps: float,
        *,
        on_overlap: OverlapPolicy = "error",
    ) -> MaskSequence:
        """A sequence from a (T, H, W) integer array (or an iterable of (H, W) arrays); 0 is background.

        `objects` None makes one unlabelled object (score 1) per id that occurs.
        """
        frames = iter(id_maps)
        try:
            first = np.asarray(next(frames))
        except StopIteration:
            raise ValueError("id_maps has no frames") from None
        if first.ndim != 2:
            raise ValueError(
                f"id_maps must be (T, H, W) or a sequence of (H, W) arrays, got a frame of shape {first.shape}"
            )
        builder = MaskSequenceBuilder(first.shape[1], first.shape[0], fps, on_overlap=on_overlap)
        builder.add_frame(first)
        for id_map in frames:
            builder.add_frame(id_map)
        return builder.build(objects)

    # -- metadata ---------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def duration(self) -> float:
        """Seconds covered: num_frames / fps."""
        return self.num_frames / self._fps

    @property
    def objects(self) -> tuple[MaskObject, ...]:
        """All objects, sorted by id (including objects absent from every frame)."""
        return self._objects

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(o.id for o in self._objects)

    def object(self, object_id: int) -> MaskObject:
        """The MaskObject with this id; ValueError for an unknown id."""
        try:
            return self._by_id[object_id]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown object id {describe_value(object_id)}; the sequence has ids {list(self.object_ids)}"
            ) from None

    @property
    def nbytes(self) -> int:
        """Bytes of the stored mask payload (compressed RLE of every object in every frame)."""
        return sum(len(e.counts) for frame in self._frames for e in frame.values() if e.counts is not None)

    # -- per-frame access -------------------------------------------------------------------------------

    def _frame(self, t: int) -> dict[int, _Entry]:
        index = _as_int(t, "frame index")
        if not 0 <= index < len(self._frames):
            raise ValueError(f"frame index {index} out of range [0, {len(self._frames)})")
        return self._frames[index]

    def _entry(self, t: int, object_id: int) -> _Entry | None:
        frame = self._frame(t)
        self.object(object_id)
        return frame.get(object_id)

    def frame_object_ids(self, t: int) -> tuple[int, ...]:
        """Ids of the objects present (mask or box) in frame t, ascending."""
        return tuple(self._frame(t))

    def id_map(self, t: int) -> np.ndarray:
        """Frame t as an (H, W) int32 array: the object id owning each pixel, 0 for background."""
        out = np.zeros((self._height, self._width), dtype=np.int32)
        for oid, entry in self._frame(t).items():
            if entry.counts is not None:
                out[_rle.decode_mask(entry.counts, self._height, self._width)] = oid
        return out

    def iter_id_maps(self) -> Iterator[np.ndarray]:
        """The id maps of all frames in order, decoded one at a time."""
        for t in range(self.num_frames):
            yield self.id_map(t)

    def mask(self, t: int, object_id: int) -> np.ndarray:
        """(H, W) bool mask of the object in frame t (all False when absent or box-only)."""
        entry = self._entry(t, object_id)
        if entry is None or entry.counts is None:
            return np.zeros((self._height, self._width), dtype=bool)
        return _rle.decode_mask(entry.counts, self._height, self._width)

    def rle_counts(self, t: int, object_id: int) -> bytes | None:
        """COCO compressed RLE counts (ASCII bytes) of the object's mask in frame t; None without a mask."""
        entry = self._entry(t, object_id)
        return None if entry is None else entry.counts

    def area(self, t: int, object_id: int) -> int:
        """Mask pixels of the object in frame t (0 when absent or box-only)."""
        entry = self._entry(t, object_id)
        return 0 if entry is None else entry.area

    def box(self, t: int, object_id: int) -> BoundingBox | None:
        """Tight box of the object's mask in frame t (its detector box when only a box is known); None when absent."""
        entry = self._entry(t, object_id)
        if entry is None:
            return None
        if entry.counts is None:
            return entry.box
        return BoundingBox.from_xywh(
            *(float(v) for v in _rle.bbox_xywh(entry.counts, self._height, self._width))
        )

    def visible(self, t: int, object_id: int) -> bool:
        """Whether the object is present in frame t (it has a mask or a box there; occluded counts)."""
        return self._entry(t, object_id) is not None

    def visibility(self, t: int, object_id: int) -> Visibility:
        entry = self._entry(t, object_id)
        if entry is None:
            return Visibility.ABSENT
        return Visibility.OCCLUDED if entry.occluded else Visibility.VISIBLE

    def frame_score(self, t: int, object_id: int) -> float:
        """Per-frame confidence of the object in frame t (e.g. SAM2's mask score); 0 when absent or not computed."""
        entry = self._entry(t, object_id)
        return 0.0 if entry is None else entry.score

    def to_dense(self, *, max_bytes: int | None = DEFAULT_MAX_DENSE_BYTES) -> np.ndarray:
        """All frames as one (T, H, W) int32 array; refuses above `max_bytes` (use `iter_id_maps` then)."""
        size = self.num_frames * self._height * self._width * 4
        if max_bytes is not None and size > max_bytes:
            raise ValueError(
                f"to_dense would allocate {size} bytes (> max_bytes={max_bytes}) for {self.num_frames} frames of "
                f"{self._width}x{self._height}; iterate with iter_id_maps() or raise max_bytes"
            )
        out = np.zeros((self.num_frames, self._height, self._width), dtype=np.int32)
        for t in range(self.num_frames):
            out[t] = self.id_map(t)
        return out

    # -- value semantics --------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskSequence):
            return NotImplemented
        return (
            self._width == other._width
            and self._height == other._height
            and self._fps == other._fps
            and self._objects == other._objects
            and self._frames == other._frames
        )

    def __hash__(self) -> int:
        return hash((self._width, self._height, self._fps, self._objects, len(self._frames)))

    def __repr__(self) -> str:
        return (
            f"MaskSequence(num_frames={self.num_frames}, width={self._width}, height={self._height}, "
            f"fps={self._fps}, object_ids={list(self.object_ids)}, nbytes={self.nbytes})"
        )


class MaskSequenceBuilder:
    """Builds a MaskSequence frame by frame, keeping only compressed RLE (bounded memory).

    `add_frame` takes either an (H, W) integer id map (0 = background) or a mapping {object_id: (H, W) bool
    mask}. Per-object masks must not overlap unless `on_overlap` says who keeps a contested pixel:
    "first_wins" (earlier in the mapping) or "last_wins" (later in the mapping).
    """

    def __init__(self, width: int, height: int, fps: float, *, on_overlap: OverlapPolicy = "error") -> None:
        self._width = _check_size(width, "width")
        self._height = _check_size(height, "height")
        self._fps = _check_fps(fps)
        if on_overlap not in _OVERLAP_POLICIES:
            raise ValueError(f"on_overlap must be one of {_OVERLAP_POLICIES}, got {on_overlap!r}")
        self._on_overlap = on_overlap
        self._frames: list[dict[int, _Entry]] = []

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def num_frames(self) -> int:
        """Frames added so far."""
        return len(self._frames)

    def add_frame(
        self,
        masks: np.ndarray | Mapping[int, np.ndarray],
        *,
        scores: Mapping[int, float] | None = None,
        occluded: Iterable[int] = (),
        boxes: Mapping[int, tuple[float, float, float, float]] | None = None,
    ) -> None:
        """Append the next frame.

        masks: an (H, W) integer id map, or {object_id: (H, W) bool mask}; an empty mask means absent.
        scores: per-frame confidence in [0, 1] per object id (default 0: not computed).
        occluded: ids of objects that are present but partly hidden in this frame.
        boxes: (x0, y0, x1, y1) for objects known only by a box in this frame (no mask pixels).
        Scores and occlusion flags of objects with neither mask nor box here are dropped.
        """
        t = len(self._frames)
        if isinstance(masks, Mapping):
            id_map = self._id_map_from_masks(masks, t)
        else:
            id_map = self._check_id_map(masks, t)
        entries = self._encode(id_map)

        for oid, box in (boxes or {}).items():
            oid = check_object_id(oid, f"frame {t}: box object id")
            box = _check_box(box, f"frame {t}: box of object {oid}")
            if oid in entries:
                raise ValueError(f"frame {t}: object {oid} has a mask; its box is computed from the mask")
            entries[oid] = _Entry(counts=None, area=0, box=box, occluded=False, score=0.0)

        for oid, score in (scores or {}).items():
            oid = check_object_id(oid, f"frame {t}: score object id")
            value = _check_score(score, f"frame {t}: score of object {oid}")
            if oid in entries:
                entries[oid] = replace(entries[oid], score=value)
        for oid in occluded:
            oid = check_object_id(oid, f"frame {t}: occluded object id")
            if oid in entries:
                entries[oid] = replace(entries[oid], occluded=True)
        self._frames.append(entries)

    def build(self, objects: Iterable[MaskObject] | None = None) -> MaskSequence:
        """The sequence of the frames added so far. `objects` None: one unlabelled object (score 1) per id seen.

        Every id that occurs in a frame must be among `objects`; objects may also be absent from every frame.
        The builder stays usable (more frames, another build).
        """
        if not self._frames:
            raise ValueError("no frames added; call add_frame at least once before build")
        if objects is None:
            seen = sorted({oid for frame in self._frames for oid in frame})
            objects = [MaskObject(oid) for oid in seen]
        return MaskSequence(
            width=self._width, height=self._height, fps=self._fps, objects=objects, frames=self._frames
        )

    # -- internals --------------------------------------------------------------------------------------

    def _check_id_map(self, id_map: Any, t: int) -> np.ndarray:
        arr = np.asarray(id_map)
        expected = (self._height, self._width)
        if arr.shape != expected:
            raise ValueError(
                f"frame {t}: id map has shape {arr.shape}, expected (height, width) = {expected}"
            )
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"frame {t}: id map must have an integer dtype, got {arr.dtype} "
                "(pass {object_id: mask} for boolean masks)"
            )
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            raise ValueError(f"frame {t}: id map has negative value {low}; ids are >= 0 (0 = background)")
        if high > MAX_OBJECT_ID:
            raise ValueError(f"frame {t}: id map has id {high} > {MAX_OBJECT_ID}")
        return arr

    def _id_map_from_masks(self, masks: Mapping[int, Any], t: int) -> np.ndarray:
        expected = (self._height, self._width)
        owner = np.zeros(expected, dtype=np.int32)
        for key, value in masks.items():
            oid = check_object_id(key, f"frame {t}: mask key")
            mask = np.asarray(value)
            if mask.shape != expected:
                raise ValueError(
                    f"frame {t}: mask of object {oid} has shape {mask.shape}, expected {expected}"
                )
            if mask.dtype != np.bool_:
                if (
                    not np.issubdtype(mask.dtype, np.integer)
                    or (mask.size and int(mask.max()) > 1)
                    or (mask.size and int(mask.min()) < 0)
                ):
                    raise ValueError(
                        f"frame {t}: mask of object {oid} must be boolean (or 0/1 integers), got {mask.dtype}"
                    )
                mask = mask.astype(bool)
            taken = mask & (owner != 0)
            if taken.any():
                if self._on_overlap == "error":
                    others = sorted(int(v) for v in np.unique(owner[taken]))
                    raise ValueError(
                        f"frame {t}: mask of object {oid} overlaps object(s) {others} on {int(taken.sum())} pixels; "
                        "each pixel belongs to at most one object (pass on_overlap='first_wins' or 'last_wins')"
                    )
                if self._on_overlap == "first_wins":
                    mask = mask & ~taken
            owner[mask] = oid
        return owner

    def _encode(self, id_map: np.ndarray) -> dict[int, _Entry]:
        high = int(id_map.max())
        if high == 0:
            return {}
        if high < _BINCOUNT_MAX_ID:
            pixel_counts = np.bincount(id_map.ravel(), minlength=high + 1)
            ids = np.flatnonzero(pixel_counts)
            areas = pixel_counts[ids]
        else:
            ids, areas = np.unique(id_map, return_counts=True)
        keep = ids != 0
        ids, areas = ids[keep], areas[keep]
        stack = id_map[:, :, None] == ids.astype(id_map.dtype)[None, None, :]  # (H, W, K)
        counts = _rle.encode_masks(stack)
        return {
            int(oid): _Entry(counts=c, area=int(a), box=None, occluded=False, score=0.0)
            for oid, a, c in zip(ids, areas, counts, strict=True)
        }
