"""Lossless codecs of MaskSequence: COCO RLE JSON, PNG id frames, NPZ and the `kmono.common.v1` proto.

    save(seq, "masks.json"); seq == load("masks.json")       # also .npz, .pb, .zip, a directory
    data = dumps(seq, "npz"); seq == loads(data)              # bytes, e.g. MediaRef.inline_data

Every round trip is exact (same pixels, same metadata, `==`). Formats, by extension:

**.json: COCO RLE JSON** (`to_coco_dict` / `from_coco_dict`). Each frame lists its objects, each with a COCO
segmentation that `pycocotools.mask.decode` reads as is and a COCO box [x, y, w, h]:

    {"format": "kmono.mask_sequence", "version": 1,
     "width": W, "height": H, "num_frames": T, "fps": 24.0,
     "objects": [{"id": 1, "label": "dog", "score": 0.9}],
     "frames": [{"frame_index": 0, "annotations": [
         {"object_id": 1, "segmentation": {"size": [H, W], "counts": "<COCO compressed RLE>"},
          "bbox": [x, y, w, h], "area": 412, "visibility": "visible", "score": 0.0}]}]}

Objects absent from a frame are not listed there. A box-only annotation has `"segmentation": null`.
Readers also accept uncompressed (`counts` as a list) and polygon segmentations. A COCO *video* annotation
file (YouTube-VIS / OVIS layout: `videos`, `annotations` with per-frame `segmentations`, `categories`) is
read by `load_coco_video` (and by `load` on a .json that has `videos`).

**directory or .zip: PNG id frames** (`save_png_frames` / `load_png_frames`). One PNG per frame named
`00000.png`, ... holding the id map: palette PNGs (mode P, the VOC/DAVIS palette of `palette.py`) when every
id is <= 255, else 16-bit greyscale PNGs (ids <= 65535; more is an error). The sidecar `sequence.json` holds
size, fps, objects, the frame file names and the per-frame data PNG cannot hold (scores, occlusion flags,
box-only objects). A directory of PNGs without a sidecar (e.g. DAVIS annotations) loads with `fps=`.

**.npz: NPZ** (`save_npz` / `load_npz`, compressed, no pickles). `meta`: a JSON string with format, version,
width, height, num_frames, fps and objects (as in the JSON layout); the RLE bytes of every (frame, object)
entry concatenated in `rle_data` (uint8) with `rle_offsets` (E + 1), and the entry table `entry_frame`,
`entry_object`, `entry_kind` (0 mask, 1 box only), `entry_occluded`, `entry_score`, `entry_box` (E x 4:
x0 y0 x1 y1, NaN for masks). An NPZ with a dense `id_maps` (T, H, W) array (plus `fps`, or `fps=`; optional
`object_ids`, `object_labels`, `object_scores`) is also read.

**.pb / .binpb: the proto** `kmono.common.v1.MaskSequence` serialized (`to_proto` / `from_proto`). RLE as the
proto defines it: COCO column-major runs, compressed string in `compressed_counts` by default.

Decoding validates everything that comes from outside (sizes, frame counts, ids, RLE run lengths) and raises
ValueError naming the file part that is wrong. Every decoder takes `limits` (`libs.media.limits.DecodeLimits`,
safe defaults): declared sizes, frame and object counts, labels, zip members and JSON nesting are checked against
them from the headers, before any frame is decoded or any member inflated. Messages never repeat strings read
from the input (a caller may point a service at a file it cannot read itself).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from google.protobuf.message import DecodeError
from kmono.common.v1 import media_pb2
from PIL import Image
from pycocotools import mask as mask_utils

from libs.errors import FieldError
from libs.media import rle as _rle
from libs.media.limits import (
    DEFAULT_LIMITS,
    TOO_LARGE,
    DecodeBudget,
    DecodeLimits,
    open_npz,
    open_zip,
    parse_json,
)
from libs.media.masks import (
    BoundingBox,
    MaskObject,
    MaskSequence,
    MaskSequenceBuilder,
    OverlapPolicy,
    Visibility,
    check_object_id,
    describe_value,
)
from libs.media.palette import voc_palette

FORMAT = "kmono.mask_sequence"
VERSION = 1
PNG_SIDECAR = "sequence.json"
PNG_FORMAT = "kmono.mask_sequence.png"

Format = Literal["json", "npz", "pb", "zip"]
_EXTENSIONS: dict[str, Format] = {".json": "json", ".npz": "npz", ".pb": "pb", ".binpb": "pb", ".zip": "zip"}
StrPath = str | os.PathLike[str]


# -- COCO RLE JSON ---------------------------------------------------------------------------------------


def to_coco_dict(seq: MaskSequence) -> dict[str, Any]:
    """The sequence in our COCO RLE JSON layout (see the module docstring); json.dumps-able."""
    frames = []
    for t in range(seq.num_frames):
        annotations = []
        for oid in seq.frame_object_ids(t):
            counts = seq.rle_counts(t, oid)
            box = seq.box(t, oid)
            assert box is not None
            ann: dict[str, Any] = {
                "object_id": oid,
                "segmentation": None
                if counts is None
                else {"size": [seq.height, seq.width], "counts": counts.decode("ascii")},
                "bbox": _json_numbers(box.to_xywh()),
                "area": seq.area(t, oid),
                "visibility": seq.visibility(t, oid).name.lower(),
                "score": seq.frame_score(t, oid),
            }
            annotations.append(ann)
        frames.append({"frame_index": t, "annotations": annotations})
    return {**_header(seq, FORMAT), "frames": frames}


def from_coco_dict(
    data: Mapping[str, Any], *, on_overlap: OverlapPolicy = "error", limits: DecodeLimits = DEFAULT_LIMITS
) -> MaskSequence:
    """The sequence of a dict in our COCO RLE JSON layout (the inverse of `to_coco_dict`), within `limits`."""
    _check_header(data, FORMAT, "JSON")
    width, height, num_frames = (
        _int_field(data, "width"),
        _int_field(data, "height"),
        _int_field(data, "num_frames"),
    )
    _check_positive(width, height, num_frames, "JSON")
    limits.check_sequence(num_frames, width, height, "JSON")
    frames = _field(data, "frames", list)
    if len(frames) != num_frames:
        raise ValueError(f"JSON: num_frames is {num_frames} but frames has {len(frames)} entries")
    objects = _objects_from_dicts(_field(data, "objects", list), "JSON objects", limits)
    builder = MaskSequenceBuilder(width, height, _field(data, "fps", int | float), on_overlap=on_overlap)
    budget = limits.budget()
    for t, frame in enumerate(frames):
        where = f"JSON frames[{t}]"
        if not isinstance(frame, Mapping):
            raise ValueError(f"{where} must be an object")
        if frame.get("frame_index", t) != t:
            raise ValueError(f"{where}: frame_index must be {t}")
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        occluded: list[int] = []
        boxes: dict[int, tuple[float, ...]] = {}
        seen: set[int] = set()
        annotations = _field(frame, "annotations", list, where)
        limits.check_objects(len(annotations), where)
        for i, ann in enumerate(annotations):
            here = f"{where}.annotations[{i}]"
            if not isinstance(ann, Mapping):
                raise ValueError(f"{here} must be an object")
            oid = check_object_id(ann.get("object_id"), f"{here}.object_id")
            if oid in seen:
                raise ValueError(f"{here}: object {oid} appears twice in frame {t}")
            seen.add(oid)
            visibility = ann.get("visibility", "visible")
            if visibility not in ("visible", "occluded", "absent"):
                raise ValueError(f"{here}.visibility must be visible, occluded or absent")
            seg = ann.get("segmentation")
            mask = (
                None
                if seg is None
                else _segmentation_mask(seg, height, width, f"{here}.segmentation", budget)
            )
            if visibility == "absent":
                if mask is not None and mask.any():
                    raise ValueError(f"{here}: visibility is absent but the segmentation is not empty")
                continue
            if mask is not None and mask.any():
                masks[oid] = mask
            elif ann.get("bbox") is not None:
                boxes[oid] = BoundingBox.from_xywh(*_xywh(ann["bbox"], f"{here}.bbox"))
            if "score" in ann:
                scores[oid] = ann["score"]
            if visibility == "occluded":
                occluded.append(oid)
        builder.add_frame(masks, scores=scores, occluded=occluded, boxes=boxes)
    return builder.build(objects)


def load_coco_video(
    source: StrPath | Mapping[str, Any],
    *,
    video_id: int | None = None,
    fps: float | None = None,
    on_overlap: OverlapPolicy = "error",
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> MaskSequence:
    """One video of a COCO video-style annotation file (YouTube-VIS / OVIS layout) as a MaskSequence.

    Each annotation (one object track with per-frame `segmentations`, null where absent) becomes an object
    with ids renumbered 1..N in file order, labelled with its category name, scored by its `score` (results
    files) or 1. `video_id` picks the video when the file has several. fps: the argument, else the video's
    `fps` field; these files usually have none, so pass it (YouTube-VIS annotates every 5th frame of
    30 fps video: 6).
    """
    data = _read_json(source, limits) if not isinstance(source, Mapping) else source
    name = source if not isinstance(source, Mapping) else "COCO video dict"
    if not isinstance(data, Mapping):
        raise ValueError(f"{name}: expected a JSON object at the top level")
    videos = _field(data, "videos", list, str(name))
    ids = [v.get("id") for v in videos if isinstance(v, Mapping) and _is_int(v.get("id"))]
    if video_id is None:
        if len(videos) != 1:
            raise ValueError(f"{name}: has {len(videos)} videos {ids}; pass video_id= to choose one")
        video = videos[0]
    else:
        matches = [v for v in videos if isinstance(v, Mapping) and v.get("id") == video_id]
        if not matches:
            raise ValueError(f"{name}: no video with id {video_id}; ids are {ids}")
        video = matches[0]
    if not isinstance(video, Mapping):
        raise ValueError(f"{name}: videos[0] must be an object")
    vid = video.get("id")
    here = f"{name} video {describe_value(vid)}"
    width, height = _int_field(video, "width", here), _int_field(video, "height", here)
    if fps is None:
        fps = video.get("fps")
        if fps is None:
            raise ValueError(f"{here} has no fps field; pass fps= (YouTube-VIS annotations: 6)")
    categories = {
        c.get("id"): c.get("name", c.get("id"))
        for c in _list_field(data, "categories", str(name))
        if isinstance(c, Mapping) and _hashable(c.get("id"))
    }
    annotations = [
        a
        for a in _field(data, "annotations", list, str(name))
        if isinstance(a, Mapping) and a.get("video_id") == vid
    ]
    limits.check_objects(len(annotations), here)
    num_frames = (
        video.get("length")
        or len(_list_field(video, "file_names", here))
        or max((len(a.get("segmentations") or ()) for a in annotations), default=0)
    )
    if not _is_int(num_frames) or num_frames <= 0:
        raise ValueError(f"{here} has no frames (no positive length, file_names or segmentations)")
    _check_positive(width, height, num_frames, here)
    limits.check_sequence(num_frames, width, height, here)
    objects = []
    tracks = []
    for i, ann in enumerate(annotations, start=1):
        where = f"{name}: annotation {describe_value(ann.get('id', i))}"
        segs = ann.get("segmentations")
        if not isinstance(segs, list) or len(segs) != num_frames:
            raise ValueError(f"{where}: segmentations must be a list of {num_frames} entries (one per frame)")
        bboxes = ann.get("bboxes") or [None] * num_frames
        if not isinstance(bboxes, list):
            raise ValueError(f"{where}: bboxes must be a list")
        category = ann.get("category_id")
        label = categories.get(category, category) if _hashable(category) else category
        label = "" if label is None else label if isinstance(label, str) else str(label)
        limits.check_label(label, f"{where}: category name")
        try:
            objects.append(MaskObject(i, label, ann.get("score", 1.0)))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        tracks.append((i, segs, bboxes, where))
    builder = MaskSequenceBuilder(width, height, fps, on_overlap=on_overlap)
    budget = limits.budget()
    for t in range(num_frames):
        masks: dict[int, np.ndarray] = {}
        boxes: dict[int, BoundingBox] = {}
        for oid, segs, bboxes, where in tracks:
            seg = segs[t]
            mask = (
                None if seg is None else _segmentation_mask(seg, height, width, f"{where} frame {t}", budget)
            )
            if mask is not None and mask.any():
                masks[oid] = mask
            elif t < len(bboxes) and bboxes[t] is not None:
                boxes[oid] = BoundingBox.from_xywh(*_xywh(bboxes[t], f"{where} bboxes[{t}]"))
        builder.add_frame(masks, boxes=boxes)
    return builder.build(objects)


def _segmentation_mask(
    seg: Any, height: int, width: int, where: str, budget: DecodeBudget | None = None
) -> np.ndarray:
    """A COCO segmentation (compressed or uncompressed RLE dict, or polygons) as an (H, W) bool mask."""
    if budget is not None:
        budget.spend(height * width, where)
    if isinstance(seg, Mapping):
        size = seg.get("size")
        if not isinstance(size, list) or size != [height, width]:
            raise ValueError(f"{where}: size must be [height, width] = [{height}, {width}]")
        counts = seg.get("counts")
        if not isinstance(counts, str | bytes | list):
            raise ValueError(
                f"{where}: counts must be a string or a list of run lengths, got {type(counts).__name__}"
            )
        try:
            return _rle.decode_untrusted(counts, height, width)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    if isinstance(seg, list) and all(isinstance(p, list) for p in seg):
        if not seg:
            return np.zeros((height, width), dtype=bool)
        return _polygon_mask(seg, height, width, where)
    raise ValueError(f"{where}: expected an RLE object or a list of polygons, got {type(seg).__name__}")


_POLYGON_SCALE = 5  # pycocotools rasterises polygons at 5x: its buffers hold one int per upsampled edge step
_MAX_POLYGON_STEPS = 1 << 24


def _polygon_mask(seg: list[list[Any]], height: int, width: int, where: str) -> np.ndarray:
    """Polygons rasterised by pycocotools, after checking what its C code trusts: finite coordinates near the
    frame (NaN or huge values would make it allocate without bound) and edges whose total length it buffers."""
    polygons = []
    steps = 0
    for p in seg:
        if len(p) < 6 or len(p) % 2 or not all(_is_number(v) for v in p):
            raise ValueError(f"{where}: polygons need an even number (>= 6) of numeric coordinates")
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise ValueError(f"{where}: polygon coordinates must be finite")
        if (np.abs(xy[:, 0]) > 2 * width).any() or (np.abs(xy[:, 1]) > 2 * height).any():
            raise ValueError(f"{where}: polygon coordinates must lie within twice the frame size")
        closed = np.vstack([xy, xy[:1]]) * _POLYGON_SCALE
        steps += int(np.abs(np.diff(closed, axis=0)).max(axis=1).sum()) + len(xy)
        polygons.append(xy.reshape(-1).tolist())
    if steps > _MAX_POLYGON_STEPS:
        raise FieldError("", f"{where}: the polygons are too long to rasterise", code=TOO_LARGE)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


# -- proto -------------------------------------------------------------------------------------------------


def to_proto(seq: MaskSequence, *, compressed: bool = True) -> media_pb2.MaskSequence:
    """The sequence as `kmono.common.v1.MaskSequence`; RLE in `compressed_counts` (or `counts` if not compressed)."""
    msg = media_pb2.MaskSequence(width=seq.width, height=seq.height, num_frames=seq.num_frames, fps=seq.fps)
    for obj in seq.objects:
        msg.objects.add(id=obj.id, label=obj.label, score=obj.score)
    for t in range(seq.num_frames):
        frame = msg.frames.add(frame_index=t)
        for oid in seq.frame_object_ids(t):
            box = seq.box(t, oid)
            assert box is not None
            om = frame.object_masks.add(
                object_id=oid,
                box=media_pb2.BoundingBox(x0=box.x0, y0=box.y0, x1=box.x1, y1=box.y1),
                visibility=int(seq.visibility(t, oid)),
                score=seq.frame_score(t, oid),
            )
            counts = seq.rle_counts(t, oid)
            if counts is not None:
                om.rle.height, om.rle.width = seq.height, seq.width
                if compressed:
                    om.rle.compressed_counts = counts
                else:
                    om.rle.counts.extend(_rle.counts_from_string(counts))
    return msg


_VISIBILITIES = frozenset(media_pb2.Visibility.values())


def from_proto(
    msg: media_pb2.MaskSequence, *, on_overlap: OverlapPolicy = "error", limits: DecodeLimits = DEFAULT_LIMITS
) -> MaskSequence:
    """The MaskSequence of a `kmono.common.v1.MaskSequence`, validated: a `FieldError` (a ValueError) whose
    `field` is the path inside the message (`width`, `objects`, `frames[3].object_masks[0].rle`, ...).

    Sizes, frame and object counts and labels are checked against `limits` before any mask is decoded (a limit
    is a FieldError with code `TOO_LARGE`, naming the whole message, field "", or the label); every mask decoded
    counts towards `limits.max_decoded_pixels`.
    A mask's `box` is recomputed from its RLE; the proto box is used only when `rle` is unset (or empty).
    VISIBILITY_UNSPECIFIED reads as visible; VISIBILITY_ABSENT entries must be empty and are dropped; any other
    value is an error naming the entry's `visibility`.
    """
    if not isinstance(msg, media_pb2.MaskSequence):
        raise FieldError("", f"expected a kmono.common.v1.MaskSequence, got {type(msg).__name__}")
    width, height, num_frames = msg.width, msg.height, msg.num_frames
    for name, value in (("width", width), ("height", height), ("num_frames", num_frames)):
        if value <= 0:
            raise FieldError(name, f"must be > 0, got {value}")
    limits.check_sequence(max(num_frames, len(msg.frames)), width, height)
    if len(msg.frames) != num_frames:
        raise FieldError("num_frames", f"is {num_frames} but the sequence has {len(msg.frames)} frames")
    if not math.isfinite(msg.fps) or msg.fps <= 0:
        raise FieldError("fps", f"must be > 0, got {msg.fps}")
    if len(msg.objects) > limits.max_objects:
        raise FieldError(
            "objects",
            f"{len(msg.objects)} objects is over this reader's limit of {limits.max_objects}",
            code=TOO_LARGE,
        )
    for i, o in enumerate(msg.objects):
        limits.check_label(o.label, f"objects[{i}].label")
    try:
        objects = [MaskObject(o.id, o.label, o.score) for o in msg.objects]
        builder = MaskSequenceBuilder(width, height, msg.fps, on_overlap=on_overlap)
    except ValueError as exc:
        raise FieldError("objects", str(exc)) from None
    budget = limits.budget()
    for t, frame in enumerate(msg.frames):
        if frame.frame_index != t:
            raise FieldError(f"frames[{t}].frame_index", f"is {frame.frame_index}, expected {t}")
        if len(frame.object_masks) > limits.max_objects:
            raise FieldError(
                f"frames[{t}].object_masks",
                f"{len(frame.object_masks)} masks is over this reader's limit of {limits.max_objects}",
                code=TOO_LARGE,
            )
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        occluded: list[int] = []
        boxes: dict[int, BoundingBox] = {}
        seen: set[int] = set()
        for i, om in enumerate(frame.object_masks):
            where = f"frames[{t}].object_masks[{i}]"
            try:
                oid = check_object_id(om.object_id, "object id")
            except ValueError as exc:
                raise FieldError(f"{where}.object_id", str(exc)) from None
            if oid in seen:
                raise FieldError(where, f"object {oid} has two masks in frame {t}")
            seen.add(oid)
            if om.visibility not in _VISIBILITIES:
                raise FieldError(
                    f"{where}.visibility",
                    f"unknown visibility {om.visibility}; use VISIBILITY_VISIBLE, VISIBILITY_OCCLUDED or "
                    "VISIBILITY_ABSENT",
                )
            mask = None
            if om.HasField("rle"):
                budget.spend(height * width)
                mask = _proto_rle_mask(om.rle, height, width, f"{where}.rle")
            if om.visibility == media_pb2.VISIBILITY_ABSENT:
                if mask is not None and mask.any():
                    raise FieldError(f"{where}.visibility", "is VISIBILITY_ABSENT but the mask is not empty")
                continue
            if mask is not None and mask.any():
                masks[oid] = mask
            elif om.HasField("box"):
                boxes[oid] = BoundingBox(om.box.x0, om.box.y0, om.box.x1, om.box.y1)
            else:
                continue
            scores[oid] = om.score
            if om.visibility == media_pb2.VISIBILITY_OCCLUDED:
                occluded.append(oid)
        try:
            builder.add_frame(masks, scores=scores, occluded=occluded, boxes=boxes)
        except ValueError as exc:
            raise FieldError(f"frames[{t}]", str(exc)) from None
    try:
        return builder.build(objects)
    except ValueError as exc:  # ids in frames but not in objects, duplicate ids
        raise FieldError("objects", str(exc)) from None


def _proto_rle_mask(rle: media_pb2.RleMask, height: int, width: int, where: str) -> np.ndarray:
    if (rle.height, rle.width) != (height, width):
        raise FieldError(
            where, f"size is {rle.height}x{rle.width} (HxW), expected the sequence's {height}x{width}"
        )
    if rle.counts and rle.compressed_counts:
        raise FieldError(where, "set exactly one of counts and compressed_counts, got both")
    if not rle.counts and not rle.compressed_counts:
        raise FieldError(where, "set exactly one of counts and compressed_counts, got neither")
    try:
        return _rle.decode_untrusted(rle.compressed_counts or list(rle.counts), height, width)
    except ValueError as e:
        raise FieldError(where, str(e)) from None


# -- NPZ ---------------------------------------------------------------------------------------------------


def save_npz(seq: MaskSequence, file: StrPath | IO[bytes]) -> None:
    """Write the sequence as a compressed NPZ of RLE entries (see the module docstring)."""
    frame_idx, object_idx, kinds, occluded, scores, boxes, offsets = [], [], [], [], [], [], [0]
    payload = bytearray()
    for t in range(seq.num_frames):
        for oid in seq.frame_object_ids(t):
            counts = seq.rle_counts(t, oid)
            frame_idx.append(t)
            object_idx.append(oid)
            kinds.append(0 if counts is not None else 1)
            occluded.append(seq.visibility(t, oid) == Visibility.OCCLUDED)
            scores.append(seq.frame_score(t, oid))
            box = seq.box(t, oid)
            boxes.append(box if counts is None else (np.nan,) * 4)
            payload += counts or b""
            offsets.append(len(payload))
    np.savez_compressed(
        file,
        meta=np.array(json.dumps(_header(seq, FORMAT))),
        entry_frame=np.array(frame_idx, dtype=np.int64),
        entry_object=np.array(object_idx, dtype=np.int64),
        entry_kind=np.array(kinds, dtype=np.uint8),
        entry_occluded=np.array(occluded, dtype=bool),
        entry_score=np.array(scores, dtype=np.float64),
        entry_box=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        rle_offsets=np.array(offsets, dtype=np.int64),
        rle_data=np.frombuffer(bytes(payload), dtype=np.uint8),
    )


def load_npz(
    file: StrPath | IO[bytes], *, fps: float | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> MaskSequence:
    """Read an NPZ written by `save_npz`, or one holding a dense `id_maps` (T, H, W) array (fps from the file or
    `fps=`). Members are read through `libs.media.limits.open_npz` (no pickles, sizes checked first)."""
    name = _describe(file)
    if isinstance(file, str | os.PathLike):
        _check_file_size(file, limits)
    with open_npz(file, limits, name) as npz:
        if "id_maps" in npz.files:
            return _load_dense_npz(npz, fps, name, limits)
        return _load_rle_npz(npz, name, limits)


def _npz_array(npz: Any, key: str, name: str, kinds: str, ndim: int) -> np.ndarray:
    array = npz[key]
    if array.dtype.kind not in kinds or array.ndim != ndim:
        raise ValueError(f"{name}: array {key} has the wrong type or shape")
    return array


def _load_dense_npz(npz: Any, fps: float | None, name: str, limits: DecodeLimits) -> MaskSequence:
    if fps is None:
        if "fps" not in npz.files:
            raise ValueError(f"{name}: has id_maps but no fps array; pass fps=")
        array = npz["fps"]
        if array.size != 1 or array.dtype.kind not in "iuf":
            raise ValueError(f"{name}: the fps array must hold one number")
        fps = float(array.reshape(-1)[0])
    id_maps = npz["id_maps"]
    if id_maps.ndim != 3:
        raise ValueError(f"{name}: id_maps must be (T, H, W), got {id_maps.ndim} dimensions")
    num_frames, height, width = id_maps.shape
    limits.check_sequence(num_frames, width, height, name)
    objects = None
    if "object_ids" in npz.files:
        ids = _npz_array(npz, "object_ids", name, "iu", 1)
        limits.check_objects(len(ids), name)
        labels = (
            _npz_array(npz, "object_labels", name, "U", 1)
            if "object_labels" in npz.files
            else [""] * len(ids)
        )
        scores = (
            _npz_array(npz, "object_scores", name, "iuf", 1)
            if "object_scores" in npz.files
            else [1.0] * len(ids)
        )
        if not len(ids) == len(labels) == len(scores):
            raise ValueError(f"{name}: object_ids, object_labels and object_scores differ in length")
        objects = []
        for i, label, score in zip(ids, labels, scores, strict=True):
            limits.check_label(str(label), f"{name}: object_labels")
            try:
                objects.append(MaskObject(int(i), str(label), float(score)))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    return MaskSequence.from_id_maps(id_maps, objects, fps)


def _load_rle_npz(npz: Any, name: str, limits: DecodeLimits) -> MaskSequence:
    required = (
        "meta entry_frame entry_object entry_kind entry_occluded entry_score entry_box rle_offsets rle_data"
    )
    missing = [k for k in required.split() if k not in npz.files]
    if missing:
        raise ValueError(f"{name}: not a mask sequence NPZ, missing arrays {missing} (and no id_maps array)")
    meta_array = npz["meta"]
    if meta_array.dtype.kind != "U" or meta_array.size != 1:
        raise ValueError(f"{name}: the meta array must hold one JSON string")
    where = f"{name} meta"
    meta = parse_json(str(meta_array.reshape(-1)[0]).encode(), limits, where)
    _check_header(meta, FORMAT, where)
    width, height = _int_field(meta, "width", where), _int_field(meta, "height", where)
    num_frames = _int_field(meta, "num_frames", where)
    _check_positive(width, height, num_frames, where)
    limits.check_sequence(num_frames, width, height, where)
    objects = _objects_from_dicts(_field(meta, "objects", list, where), f"{where} objects", limits)
    frame_idx = _npz_array(npz, "entry_frame", name, "iu", 1)
    object_idx = _npz_array(npz, "entry_object", name, "iu", 1)
    kinds = _npz_array(npz, "entry_kind", name, "iu", 1)
    occluded = _npz_array(npz, "entry_occluded", name, "biu", 1)
    scores = _npz_array(npz, "entry_score", name, "iuf", 1)
    boxes = _npz_array(npz, "entry_box", name, "iuf", 2)
    offsets = _npz_array(npz, "rle_offsets", name, "iu", 1)
    payload = _npz_array(npz, "rle_data", name, "u", 1).tobytes()
    n = len(frame_idx)
    for key, arr in (
        ("entry_object", object_idx),
        ("entry_kind", kinds),
        ("entry_occluded", occluded),
        ("entry_score", scores),
        ("entry_box", boxes),
    ):
        if len(arr) != n:
            raise ValueError(f"{name}: {key} has {len(arr)} entries, entry_frame has {n}")
    if boxes.shape[1:] != (4,):
        raise ValueError(f"{name}: entry_box must be (E, 4)")
    if (
        len(offsets) != n + 1
        or offsets[0] != 0
        or offsets[-1] != len(payload)
        or np.any(np.diff(offsets.astype(np.int64)) < 0)
    ):
        raise ValueError(f"{name}: rle_offsets do not describe rle_data")
    if n and (
        np.any(np.diff(frame_idx.astype(np.int64)) < 0) or frame_idx[0] < 0 or frame_idx[-1] >= num_frames
    ):
        raise ValueError(f"{name}: entry_frame must be ascending frame indices in [0, {num_frames})")
    builder = MaskSequenceBuilder(width, height, _field(meta, "fps", int | float, where))
    bounds = np.searchsorted(frame_idx, np.arange(num_frames + 1))
    budget = limits.budget()
    for t in range(num_frames):
        masks: dict[int, np.ndarray] = {}
        boxes_t: dict[int, tuple[float, ...]] = {}
        scores_t: dict[int, float] = {}
        occluded_t: list[int] = []
        limits.check_objects(int(bounds[t + 1] - bounds[t]), f"{name}: frame {t}")
        for e in range(bounds[t], bounds[t + 1]):
            oid = check_object_id(int(object_idx[e]), f"{name}: entry_object[{e}]")
            if oid in masks or oid in boxes_t:
                raise ValueError(f"{name}: object {oid} has two entries in frame {t}")
            if kinds[e] == 0:
                budget.spend(height * width, f"{name}: entry {e}")
                try:
                    masks[oid] = _rle.decode_untrusted(payload[offsets[e] : offsets[e + 1]], height, width)
                except ValueError as err:
                    raise ValueError(f"{name}: entry {e} (frame {t}, object {oid}): {err}") from None
            else:
                boxes_t[oid] = tuple(float(v) for v in boxes[e])
            scores_t[oid] = float(scores[e])
            if occluded[e]:
                occluded_t.append(oid)
        builder.add_frame(masks, scores=scores_t, occluded=occluded_t, boxes=boxes_t)
    return builder.build(objects)


# -- PNG id frames -------------------------------------------------------------------------------------------


def save_png_frames(seq: MaskSequence, path: StrPath | IO[bytes]) -> None:
    """Write one PNG id map per frame plus `sequence.json` into a directory, or into a zip (a path ending in
    .zip, or a binary file object)."""
    high = max(
        (
            oid
            for t in range(seq.num_frames)
            for oid in seq.frame_object_ids(t)
            if seq.rle_counts(t, oid) is not None
        ),
        default=0,
    )
    if high > 65535:
        raise ValueError(f"PNG id frames hold ids up to 65535 (16-bit); this sequence has masks of id {high}")
    digits = max(5, len(str(seq.num_frames - 1)))
    names = [f"{t:0{digits}d}.png" for t in range(seq.num_frames)]
    sidecar = json.dumps(_png_sidecar(seq, names), indent=1).encode()
    pngs = zip(names, _png_frames(seq, palette=high <= 255), strict=True)
    if isinstance(path, str | os.PathLike) and Path(path).suffix.lower() != ".zip":
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        for name, png in pngs:
            (root / name).write_bytes(png)
        (root / PNG_SIDECAR).write_bytes(sidecar)
        return
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are already compressed
        for name, png in pngs:
            zf.writestr(name, png)
        zf.writestr(PNG_SIDECAR, sidecar)


def load_png_frames(
    path: StrPath | IO[bytes], *, fps: float | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> MaskSequence:
    """Read PNG id frames from a directory or zip (with `sequence.json`, or PNGs only plus `fps=`), within
    `limits` (zip members through `libs.media.limits.open_zip`; each PNG's size read from its header first)."""
    if isinstance(path, str | os.PathLike) and Path(path).is_dir():
        root = Path(path)
        names = [p.name for p in root.iterdir() if p.is_file()]
        if len(names) > limits.max_frames + 16:
            raise FieldError("", f"{root}: more files than this reader's limit of frames", code=TOO_LARGE)
        return _load_png(_PngSource(str(root), lambda name: (root / name).read_bytes(), names), fps, limits)
    if isinstance(path, str | os.PathLike):
        _check_file_size(path, limits)
    name = _describe(path) if isinstance(path, str | os.PathLike) else "the zip"
    with open_zip(path, limits, name) as zf:
        names = zf.names()
        # Zips made by hand often wrap the frames in one folder: read the files relative to it.
        tops = {n.split("/", 1)[0] for n in names}
        prefix = f"{tops.pop()}/" if len(tops) == 1 and all("/" in n for n in names) else ""
        names = [n[len(prefix) :] for n in names]
        return _load_png(_PngSource(name, lambda member: zf.read(prefix + member), names), fps, limits)


@dataclass(frozen=True)
class _PngSource:
    name: str  # for error messages
    read: Callable[[str], bytes]
    names: list[str]


def _png_sidecar(seq: MaskSequence, names: list[str]) -> dict[str, Any]:
    frame_data = []
    for t in range(seq.num_frames):
        for oid in seq.frame_object_ids(t):
            item: dict[str, Any] = {}
            if seq.rle_counts(t, oid) is None:
                item["box"] = _json_numbers(seq.box(t, oid) or ())
            if seq.frame_score(t, oid):
                item["score"] = seq.frame_score(t, oid)
            if seq.visibility(t, oid) == Visibility.OCCLUDED:
                item["occluded"] = True
            if item:
                frame_data.append({"frame_index": t, "object_id": oid, **item})
    return {
        **_header(seq, PNG_FORMAT),
        "frame_files": names,
        "frame_data": frame_data,
    }


def _png_frames(seq: MaskSequence, *, palette: bool) -> Iterator[bytes]:
    flat_palette = voc_palette().reshape(-1).tolist()
    for id_map in seq.iter_id_maps():
        if palette:
            image = Image.fromarray(id_map.astype(np.uint8))  # mode L
            image.putpalette(flat_palette)  # L -> P, same indices
        else:
            image = Image.fromarray(id_map.astype(np.uint16))  # mode I;16
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        yield buffer.getvalue()


def _read_png_id_map(
    data: bytes, where: str, limits: DecodeLimits, size: tuple[int, int] | None = None
) -> np.ndarray:
    """The id map of one PNG; its size (`size` (width, height) when known) checked from the header first."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format != "PNG":
                raise ValueError("not a PNG")
            width, height = image.size
            if size is not None and (width, height) != size:
                raise FieldError("", f"{where}: is {width}x{height}, expected {size[0]}x{size[1]}")
            limits.check_sequence(1, width, height, where)
            image.load()
    except FieldError:
        raise
    except Exception:  # PIL raises many types for broken files; their messages may quote the file
        raise ValueError(f"{where}: not a readable PNG") from None
    if image.mode in ("P", "L", "1", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image).astype(np.int32)
    raise ValueError(
        f"{where}: PNG mode {image.mode} is not an id map; use palette (P), 8-bit or 16-bit greyscale"
    )


def _bare_png_maps(src: _PngSource, pngs: list[str], limits: DecodeLimits) -> Iterator[np.ndarray]:
    first = _read_png_id_map(src.read(pngs[0]), f"{src.name}/{pngs[0]}", limits)
    height, width = first.shape
    limits.check_sequence(len(pngs), width, height, src.name)
    yield first
    for n in pngs[1:]:
        yield _read_png_id_map(src.read(n), f"{src.name}/{n}", limits, (width, height))


def _load_png(src: _PngSource, fps: float | None, limits: DecodeLimits) -> MaskSequence:
    if PNG_SIDECAR not in src.names:
        pngs = sorted((n for n in src.names if n.lower().endswith(".png")), key=_natural_key)
        if not pngs:
            raise ValueError(f"{src.name}: no PNG frames and no {PNG_SIDECAR}")
        if fps is None:
            raise ValueError(f"{src.name}: has no {PNG_SIDECAR}; pass fps= to read bare PNG frames")
        return MaskSequence.from_id_maps(_bare_png_maps(src, pngs, limits), None, fps)
    where = f"{src.name}/{PNG_SIDECAR}"
    meta = parse_json(src.read(PNG_SIDECAR), limits, where)
    _check_header(meta, PNG_FORMAT, where)
    width, height, num_frames = (
        _int_field(meta, "width", where),
        _int_field(meta, "height", where),
        _int_field(meta, "num_frames", where),
    )
    _check_positive(width, height, num_frames, where)
    limits.check_sequence(num_frames, width, height, where)
    names = _field(meta, "frame_files", list, where)
    if len(names) != num_frames:
        raise ValueError(f"{where}: num_frames is {num_frames} but frame_files has {len(names)} names")
    known = set(src.names)
    missing = [n for n in names if not isinstance(n, str) or n not in known]
    if missing:
        raise ValueError(f"{src.name}: {len(missing)} frame files listed in {PNG_SIDECAR} are missing")
    objects = _objects_from_dicts(_field(meta, "objects", list, where), f"{where} objects", limits)
    extras: dict[int, dict[int, Mapping[str, Any]]] = {}
    for i, item in enumerate(_field(meta, "frame_data", list, where)):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: frame_data[{i}] must be an object")
        t = item.get("frame_index")
        if not _is_int(t) or not 0 <= t < num_frames:
            raise ValueError(f"{where}: frame_data[{i}].frame_index must be in [0, {num_frames})")
        oid = check_object_id(item.get("object_id"), f"{where}: frame_data[{i}].object_id")
        extras.setdefault(t, {})[oid] = item
    builder = MaskSequenceBuilder(
        width, height, fps if fps is not None else _field(meta, "fps", int | float, where)
    )
    for t, name in enumerate(names):
        id_map = _read_png_id_map(src.read(name), f"{src.name} frame {t}", limits, (width, height))
        frame_extras = extras.get(t, {})
        boxes = {oid: item["box"] for oid, item in frame_extras.items() if "box" in item}
        scores = {oid: item["score"] for oid, item in frame_extras.items() if "score" in item}
        occluded = [oid for oid, item in frame_extras.items() if item.get("occluded")]
        builder.add_frame(id_map, scores=scores, occluded=occluded, boxes=boxes)
    return builder.build(objects)


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# -- save / load / dumps / loads --------------------------------------------------------------------------


def save(seq: MaskSequence, path: StrPath) -> None:
    """Write `seq` in the format of `path`'s extension: .json, .npz, .pb/.binpb, .zip (PNG), or a directory (PNG).

    A path with no extension (or an existing directory) is a directory of PNG id frames.
    """
    if not isinstance(seq, MaskSequence):
        raise ValueError(f"save expects a MaskSequence, got {type(seq).__name__}")
    fmt = _format_of(path)
    path = Path(path)
    if fmt in ("dir", "zip"):
        save_png_frames(seq, path)
    else:
        path.write_bytes(dumps(seq, fmt))


def load(
    path: StrPath,
    *,
    fps: float | None = None,
    on_overlap: OverlapPolicy = "error",
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> MaskSequence:
    """Read a mask sequence saved by `save` (dispatching on the extension like `save`), within `limits`.

    `fps` is only needed for files that carry none (bare PNG directories, COCO video files, dense NPZ);
    a .json with `videos` is read as a COCO video annotation file (see `load_coco_video`).
    """
    fmt = _format_of(path)
    path = Path(path)
    if fmt == "dir":
        if not path.is_dir():
            raise FileNotFoundError(f"no mask sequence directory at {path}")
        return load_png_frames(path, fps=fps, limits=limits)
    if not path.is_file():
        raise FileNotFoundError(f"no mask sequence file at {path}")
    if fmt == "json":
        data = _read_json(path, limits)
        if isinstance(data, Mapping) and "videos" in data and "annotations" in data:
            return _with_name(
                path, lambda: load_coco_video(data, fps=fps, on_overlap=on_overlap, limits=limits)
            )
        return _with_name(path, lambda: from_coco_dict(data, on_overlap=on_overlap, limits=limits))
    if fmt == "zip":
        return load_png_frames(path, fps=fps, limits=limits)
    if fmt == "npz":
        return load_npz(path, fps=fps, limits=limits)
    _check_file_size(path, limits)
    return _with_name(path, lambda: loads(path.read_bytes(), "pb", limits=limits))


def dumps(seq: MaskSequence, format: Format) -> bytes:
    """The bytes of `seq` in one format: "json", "npz", "pb" (serialized proto) or "zip" (PNG id frames)."""
    if format == "json":
        return json.dumps(to_coco_dict(seq), separators=(",", ":")).encode()
    if format == "pb":
        return to_proto(seq).SerializeToString()
    buffer = io.BytesIO()
    if format == "npz":
        save_npz(seq, buffer)
    elif format == "zip":
        save_png_frames(seq, buffer)
    else:
        raise ValueError(f"unknown mask sequence format {format!r}; expected one of json, npz, pb, zip")
    return buffer.getvalue()


def loads(
    data: bytes,
    format: Format | None = None,
    *,
    fps: float | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> MaskSequence:
    """A mask sequence from bytes; `format` None sniffs it (JSON, NPZ, PNG zip, else serialized proto).

    Bytes from outside are safe to pass: everything is checked against `limits` before it is decoded, and
    every failure is a ValueError (a `FieldError` with code `TOO_LARGE` for a limit)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"loads expects bytes, got {type(data).__name__}")
    data = bytes(data)
    limits.check_bytes(len(data), "the mask sequence")
    if format is None:
        format = _sniff(data, limits)
    if format == "json":
        obj = parse_json(data, limits, "mask sequence JSON")
        if isinstance(obj, Mapping) and "videos" in obj:
            return load_coco_video(obj, fps=fps, limits=limits)
        return from_coco_dict(obj, limits=limits)
    if format == "npz":
        return load_npz(io.BytesIO(data), fps=fps, limits=limits)
    if format == "zip":
        return load_png_frames(io.BytesIO(data), fps=fps, limits=limits)
    if format == "pb":
        try:
            msg = media_pb2.MaskSequence.FromString(data)
        except (DecodeError, RuntimeError, ValueError):
            raise ValueError("not a serialized kmono.common.v1.MaskSequence") from None
        return from_proto(msg, limits=limits)
    raise ValueError(f"unknown mask sequence format {format!r}; expected one of json, npz, pb, zip")


def _sniff(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Format:
    head = data[:64].lstrip()
    if head.startswith(b"{"):
        return "json"
    if data.startswith(b"PK"):
        try:
            with open_zip(io.BytesIO(data), limits, "the zip") as zf:
                names = zf.names()
        except ValueError:
            return "zip"  # the zip reader says what is wrong with it
        return "npz" if any(n.endswith(".npy") for n in names) else "zip"
    return "pb"


def _format_of(raw: StrPath) -> Format | Literal["dir"]:
    path = Path(raw)
    if os.fspath(raw).endswith(("/", os.sep)) or path.is_dir():
        return "dir"
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == "":
        return "dir"
    raise ValueError(
        f"unknown mask sequence extension {path.suffix!r} in {path}; use .json (COCO RLE), .npz, .pb/.binpb "
        "(proto), .zip or a directory (PNG id frames)"
    )


# -- helpers ------------------------------------------------------------------------------------------------


def _with_name(path: Path, fn: Any) -> MaskSequence:
    try:
        return fn()
    except FieldError as e:
        raise FieldError(e.field, f"{path}: {e.reason}", code=e.code) from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _check_file_size(path: StrPath, limits: DecodeLimits) -> None:
    try:
        size = os.stat(path).st_size
    except OSError:
        return  # the reader reports the missing file
    limits.check_bytes(size, _describe(path))


def _read_json(path: StrPath, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    _check_file_size(path, limits)
    with open(path, "rb") as f:
        data = f.read(limits.max_bytes + 1)
    return parse_json(data, limits, str(path))


def _describe(file: Any) -> str:
    return str(file) if isinstance(file, str | os.PathLike) else "the data"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _check_positive(width: int, height: int, num_frames: int, where: str) -> None:
    if width <= 0 or height <= 0 or num_frames < 0:
        raise ValueError(f"{where}: width and height must be > 0 and num_frames >= 0")


def _list_field(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}: field {key!r} must be a list")
    return value


def _check_header(data: Any, expected: str, where: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object at the top level, got {type(data).__name__}")
    if data.get("format") != expected:
        raise ValueError(f"{where}: format must be {expected!r}")
    if data.get("version") != VERSION:
        raise ValueError(f"{where}: version must be {VERSION} (the one this reader knows)")


def _field(data: Mapping[str, Any], key: str, kind: Any, where: str = "JSON") -> Any:
    if key not in data:
        raise ValueError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _int_field(data: Mapping[str, Any], key: str, where: str = "JSON") -> int:
    return _field(data, key, int, where)


def _xywh(box: Any, where: str) -> tuple[float, float, float, float]:
    if not isinstance(box, list | tuple) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise ValueError(f"{where}: expected four numbers [x, y, w, h]")
    x, y, w, h = (float(v) for v in box)
    return x, y, w, h


def _header(seq: MaskSequence, fmt: str) -> dict[str, Any]:
    return {
        "format": fmt,
        "version": VERSION,
        "width": seq.width,
        "height": seq.height,
        "num_frames": seq.num_frames,
        "fps": seq.fps,
        "objects": [_object_dict(o) for o in seq.objects],
    }


def _object_dict(obj: MaskObject) -> dict[str, Any]:
    return {"id": obj.id, "label": obj.label, "score": obj.score}


def _objects_from_dicts(
    items: list[Any], where: str, limits: DecodeLimits = DEFAULT_LIMITS
) -> list[MaskObject]:
    limits.check_objects(len(items), where)
    objects = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}[{i}] must be an object")
        label = item.get("label", "")
        if isinstance(label, str):
            limits.check_label(label, f"{where}[{i}].label")
        try:
            objects.append(MaskObject(item.get("id"), item.get("label", ""), item.get("score", 1.0)))
        except ValueError as e:
            raise ValueError(f"{where}[{i}]: {e}") from None
    return objects


def _json_numbers(values: Any) -> list[int | float]:
    """Box coordinates as ints where they are whole (mask boxes), floats otherwise (detector boxes)."""
    return [int(v) if float(v).is_integer() else float(v) for v in values]
