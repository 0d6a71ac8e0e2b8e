"""Composing mask sequences: several layers stacked into one sequence, higher layers covering lower ones.

    result = compose([Layer(background), Layer(dog, z_order=1, start_frame=8)], fps=8)
    result.sequence                      # the composed MaskSequence
    result.object_id(1, 3)               # the id that object 3 of layer 1 has in it

Each layer is resampled to the output frame rate (`edit.resample_fps`'s rule: nearest earlier frame) and
size (nearest neighbour: output pixel (x, y) shows layer pixel (floor((x + 0.5) * w / W), ...)), placed at
its `start_frame`, and painted in (z_order, layer index) order, so a higher z_order covers a lower one and
ties go to the later layer. Covered pixels are removed from the lower objects (one owner per pixel); an
object that loses pixels to a higher layer is flagged OCCLUDED in that frame, one that loses all of them is
absent there. Output frames outside a layer's span show nothing of it.

Object ids: by default every object is renumbered 1..n in layer order (ascending ids within a layer), as
`kmono.masks.v1.ComposeMasksResponse` promises; with `keep_object_ids=True` an object keeps its id unless an
earlier layer already uses it, and colliding objects get fresh ids above the largest id of any layer.
Either way `Composition.mappings` says where each source object went. Labels and scores are kept.

Frames stream: each output frame decodes one frame per layer and is added to a builder.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from generation.masks.edit import Frame, add_frame, fps_ratio, read_frame, resample_num_frames
from generation.masks.trajectory import FieldError, check_int, check_number
from libs.media import BoundingBox, MaskObject, MaskSequence, MaskSequenceBuilder

__all__ = ["Composition", "IdMapping", "Layer", "compose", "resize"]


@dataclass(frozen=True)
class Layer:
    """A sequence placed in a composition: `z_order` (higher covers lower) and the output frame at which its
    first frame is shown (>= 0)."""

    sequence: MaskSequence
    z_order: int = 0
    start_frame: int = 0


@dataclass(frozen=True)
class IdMapping:
    """Object `source_object_id` of layer `layer_index` is object `object_id` in the composition."""

    layer_index: int
    source_object_id: int
    object_id: int


@dataclass(frozen=True)
class Composition:
    """A composed sequence and where each source object went."""

    sequence: MaskSequence
    mappings: tuple[IdMapping, ...]

    def object_id(self, layer_index: int, source_object_id: int) -> int:
        for mapping in self.mappings:
            if (mapping.layer_index, mapping.source_object_id) == (layer_index, source_object_id):
                return mapping.object_id
        raise ValueError(f"layer {layer_index} has no object {source_object_id}")


def _pixel_lookup(source: int, target: int) -> np.ndarray:
    """For each of `target` output pixels, the source pixel its centre falls in (nearest neighbour)."""
    return np.minimum((np.arange(target) * 2 + 1) * source // (2 * target), source - 1)


class _Placed:
    """One layer as the composition sees it: timing, pixel lookups and its new object ids."""

    def __init__(self, index: int, layer: Layer, width: int, height: int, fps: float, ids: dict[int, int]):
        seq = layer.sequence
        self.index, self.layer, self.seq, self.ids = index, layer, seq, ids
        self.start = layer.start_frame
        self.length = resample_num_frames(seq.num_frames, seq.fps, fps)
        self.ratio = fps_ratio(seq.fps, fps)
        self.rows = _pixel_lookup(seq.height, height)
        self.cols = _pixel_lookup(seq.width, width)
        self.sx, self.sy = width / seq.width, height / seq.height
        high = max(ids, default=0)
        self.remap = np.zeros(high + 1, dtype=np.int32)
        for old, new in ids.items():
            self.remap[old] = new

    def frame(self, t: int) -> Frame | None:
        """This layer's frame shown at output frame t, resized and renumbered; None outside its span."""
        u = t - self.start
        if not 0 <= u < self.length:
            return None
        source = read_frame(self.seq, min(math.floor(u * self.ratio), self.seq.num_frames - 1))
        id_map = self.remap[source.id_map[self.rows[:, None], self.cols[None, :]]]
        return Frame(
            id_map=id_map,
            scores={self.ids[oid]: s for oid, s in source.scores.items()},
            occluded={self.ids[oid] for oid in source.occluded},
            boxes={
                self.ids[oid]: BoundingBox(b.x0 * self.sx, b.y0 * self.sy, b.x1 * self.sx, b.y1 * self.sy)
                for oid, b in source.boxes.items()
            },
        )


def _assign_ids(layers: Sequence[Layer], keep: bool) -> list[dict[int, int]]:
    if not keep:
        next_id = 1
        result = []
        for layer in layers:
            result.append({oid: next_id + k for k, oid in enumerate(layer.sequence.object_ids)})
            next_id += len(layer.sequence.object_ids)
        return result
    fresh = max((max(layer.sequence.object_ids, default=0) for layer in layers), default=0) + 1
    used: set[int] = set()
    result = []
    for layer in layers:
        ids = {}
        for oid in layer.sequence.object_ids:
            if oid in used:
                ids[oid], fresh = fresh, fresh + 1
            else:
                ids[oid] = oid
            used.add(ids[oid])
        result.append(ids)
    return result


def _check_layers(layers: Sequence[Layer | MaskSequence]) -> list[Layer]:
    checked = []
    if not layers:
        raise FieldError("layers", "give at least one layer")
    for i, layer in enumerate(layers):
        if isinstance(layer, MaskSequence):
            layer = Layer(layer)
        if not isinstance(layer, Layer) or not isinstance(layer.sequence, MaskSequence):
            raise FieldError(f"layers[{i}]", f"must be a Layer or a MaskSequence, got {type(layer).__name__}")
        check_int(layer.z_order, f"layers[{i}].z_order")
        check_int(layer.start_frame, f"layers[{i}].start_frame", minimum=0)
        checked.append(layer)
    return checked


def compose(
    layers: Sequence[Layer | MaskSequence],
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    num_frames: int | None = None,
    keep_object_ids: bool = False,
) -> Composition:
    """Stack `layers` into one sequence (see the module docstring). A bare MaskSequence is a layer with
    z_order 0 starting at frame 0. width, height, fps: None takes the first layer's; num_frames None: up to
    the end of the layer that ends last."""
    placed_layers = _check_layers(layers)
    first = placed_layers[0].sequence
    width = first.width if width is None else check_int(width, "width", minimum=1)
    height = first.height if height is None else check_int(height, "height", minimum=1)
    fps = first.fps if fps is None else check_number(fps, "fps", positive=True)
    ids = _assign_ids(placed_layers, keep_object_ids)
    placed = [_Placed(i, layer, width, height, fps, ids[i]) for i, layer in enumerate(placed_layers)]
    if num_frames is None:
        num_frames = max(p.start + p.length for p in placed)
    else:
        num_frames = check_int(num_frames, "num_frames", minimum=1)
    order = sorted(placed, key=lambda p: (p.layer.z_order, p.index))

    def frames() -> Iterator[Frame]:
        for t in range(num_frames):
            out = Frame(np.zeros((height, width), dtype=np.int32))
            shown = [frame for layer in order if (frame := layer.frame(t)) is not None]
            for frame in shown:
                drawn = frame.id_map != 0
                out.id_map[drawn] = frame.id_map[drawn]
                out.scores.update(frame.scores)
                out.occluded |= frame.occluded
                out.boxes.update(frame.boxes)
            for frame in shown:
                covered = (frame.id_map != 0) & (out.id_map != frame.id_map)
                out.occluded.update(int(oid) for oid in np.unique(frame.id_map[covered]))
            yield out

    builder = MaskSequenceBuilder(width, height, fps)
    for frame in frames():
        add_frame(builder, frame)
    objects = [MaskObject(ids[p.index][o.id], o.label, o.score) for p in placed for o in p.seq.objects]
    mappings = tuple(
        IdMapping(p.index, old, new) for p in placed for old, new in sorted(ids[p.index].items())
    )
    return Composition(builder.build(objects), mappings)


def resize(seq: MaskSequence, width: int, height: int) -> MaskSequence:
    """`seq` at another frame size (nearest neighbour; boxes scaled)."""
    return compose([seq], width=width, height=height, keep_object_ids=True).sequence
