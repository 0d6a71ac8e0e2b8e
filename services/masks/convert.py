"""MaskService requests -> generation/masks calls, with every bad input turned into INVALID_ARGUMENT naming its
request field (AIP-193 `BadRequest.FieldViolation`), and size limits checked before any work is done.

Domain errors (`libs.errors.FieldError`) name the Python parameter; `field_violation` puts the request path in
front and renames parameters to their proto fields (`offset` -> `constant_offset` or `offset_trajectory`,
`center` -> `center_trajectory`, ...).

Every string and repeated field is bounded before any work (our choices; over a bound is INVALID_ARGUMENT naming
the field): `text_query` and a video `uri` at most `MAX_TEXT_QUERY_CHARS` (1,000) and `MAX_URI_CHARS` (4,096)
characters; at most `MAX_EDITS` (64) edits; `object_ids` and `labels` of an edit at most the server's
`max_objects` entries (the most objects a sequence it takes may hold); a label at most `MAX_LABEL_CHARS` (256,
as libs/media's decoder bounds the labels inside a sequence); a trajectory at most `MAX_KEYFRAMES` (10,000)
keyframes. Layers and synthesized objects have the server's `max_layers` and `max_objects`. Frame rates to
resample to (`resample_fps.fps`, ComposeMasks `fps`) are at least `edit.MIN_FPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from kmono.masks.v1 import masks_pb2

from generation.masks import edit, normalize_query
from generation.masks.compose import Layer
from generation.masks.defaults import BOX_THRESHOLD, MERGE_IOU, TEXT_THRESHOLD
from generation.masks.engine import ExtractionJob
from generation.masks.synth import MaskTemplate, SyntheticObject
from generation.masks.trajectory import Trajectory
from libs.errors import FieldError
from libs.media import MaskSequence
from libs.media.policy import MediaPolicy
from libs.serving.inputs import (
    TOO_LARGE,
    SizeLimits,
    check_request_id,
    field_violation,
    finite,
    invalid,
    mask_sequence,
    probe_media,
)

MAX_TEXT_QUERY_CHARS = 1000
MAX_URI_CHARS = 4096
MAX_EDITS = 64
MAX_LABEL_CHARS = 256
MAX_KEYFRAMES = 10_000

_INTERPOLATIONS = {
    masks_pb2.INTERPOLATION_UNSPECIFIED: "linear",
    masks_pb2.INTERPOLATION_LINEAR: "linear",
    masks_pb2.INTERPOLATION_STEP: "step",
    masks_pb2.INTERPOLATION_SMOOTH: "smooth",
}
_SHAPES = {
    masks_pb2.SHAPE_CIRCLE: "circle",
    masks_pb2.SHAPE_SQUARE: "square",
    masks_pb2.SHAPE_ELLIPSE: "ellipse",
}


# -- ExtractMasks ---------------------------------------------------------------------------------------------


def extraction_job(
    request: masks_pb2.ExtractMasksRequest, limits: SizeLimits, policy: MediaPolicy
) -> ExtractionJob:
    """The ExtractionJob of a request: query, thresholds (0: the defaults), the video readable and in limits."""
    if len(request.text_query) > MAX_TEXT_QUERY_CHARS:
        raise invalid(
            "text_query", f"at most {MAX_TEXT_QUERY_CHARS} characters, got {len(request.text_query)}"
        )
    if not request.text_query.strip():
        raise invalid("text_query", "required: the objects to find, e.g. `a dog.`")
    try:
        normalize_query(request.text_query)
    except ValueError as exc:
        raise invalid("text_query", str(exc)) from None
    for name in ("box_threshold", "text_threshold", "merge_iou_threshold"):
        finite(getattr(request, name), name, high=1.0)
    for name in ("redetect_every_n_frames", "max_objects"):
        if getattr(request, name) < 0:
            raise invalid(name, f"must be >= 0, got {getattr(request, name)}")
    check_request_id(request.request_id)
    if len(request.video.uri) > MAX_URI_CHARS:
        raise invalid("video.uri", f"at most {MAX_URI_CHARS} characters, got {len(request.video.uri)}")
    field, video, info = probe_media(request.video, "video", policy)
    limits.check(field, info.num_frames, info.width, info.height, "the video")
    return ExtractionJob(
        video=video,
        query=request.text_query,
        box_threshold=request.box_threshold or BOX_THRESHOLD,
        text_threshold=request.text_threshold or TEXT_THRESHOLD,
        merge_iou=request.merge_iou_threshold or MERGE_IOU,
        redetect_every=request.redetect_every_n_frames or None,
        reverse=request.reverse_pass,
        max_objects=request.max_objects or None,
    )


def trajectory(msg: masks_pb2.PointTrajectory | masks_pb2.ScalarTrajectory, field: str) -> Trajectory:
    """A PointTrajectory or ScalarTrajectory as a Trajectory; errors at `field.keyframes[i]...`."""
    if len(msg.keyframes) > MAX_KEYFRAMES:
        raise invalid(f"{field}.keyframes", f"at most {MAX_KEYFRAMES} keyframes, got {len(msg.keyframes)}")
    interpolation = _INTERPOLATIONS.get(msg.interpolation)
    if interpolation is None:
        raise invalid(f"{field}.interpolation", f"unknown interpolation {msg.interpolation}")
    if isinstance(msg, masks_pb2.PointTrajectory):
        keyframes = [(k.frame_index, (k.x, k.y)) for k in msg.keyframes]
    else:
        keyframes = [(k.frame_index, k.value) for k in msg.keyframes]
    try:
        return Trajectory(keyframes, interpolation)  # type: ignore[arg-type]
    except FieldError as exc:
        raise field_violation(exc, field) from None


# -- EditMasks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditStep:
    """One request edit: where it is (`edits[i].translate`), what it does, and how long its result will be."""

    path: str
    apply: Callable[[MaskSequence], MaskSequence]
    renames: dict[str, str]
    planned_frames: Callable[[MaskSequence], int] | None = None
    size_field: str = ""

    def run(self, seq: MaskSequence, limits: SizeLimits) -> MaskSequence:
        try:
            if self.planned_frames is not None:
                frames = self.planned_frames(seq)
                limits.check(f"{self.path}.{self.size_field}", frames, seq.width, seq.height, "the result")
            return self.apply(seq)
        except FieldError as exc:
            raise field_violation(exc, self.path, self.renames) from None


def _pick(
    parent: object, oneof: str, convert: dict[str, Callable[[object, str], object]], path: str
) -> tuple[str, object]:
    which = parent.WhichOneof(oneof)  # type: ignore[attr-defined]
    if which is None:
        raise invalid(f"{path}.{next(iter(convert))}", f"set one of {', '.join(convert)}")
    return which, convert[which](getattr(parent, which), f"{path}.{which}")


def _offset(msg: masks_pb2.Offset, field: str) -> tuple[float, float]:
    return msg.dx, msg.dy


def _constant(value: float, field: str) -> float:
    return value


def _check_count(items: object, field: str, limit: int, what: str) -> None:
    count = len(items)  # type: ignore[arg-type]
    if count > limit:
        raise invalid(field, f"at most {limit} {what}, got {count}")


def _check_labels(labels: dict[int, str] | list[str], field: str, max_objects: int) -> None:
    _check_count(labels, field, max_objects, "labels")
    pairs = labels.items() if isinstance(labels, dict) else enumerate(labels)
    for key, label in pairs:
        if len(label) > MAX_LABEL_CHARS:
            raise invalid(
                f"{field}[{key}]", f"a label is at most {MAX_LABEL_CHARS} characters, got {len(label)}"
            )


def edit_steps(request: masks_pb2.EditMasksRequest, limits: SizeLimits) -> list[EditStep]:
    """The steps of a request's edits, each checked (`edits` at most `MAX_EDITS`)."""
    _check_count(request.edits, "edits", MAX_EDITS, "edits")
    return [edit_step(msg, i, limits.max_objects) for i, msg in enumerate(request.edits)]


def edit_step(msg: masks_pb2.MaskEdit, index: int, max_objects: int = SizeLimits.max_objects) -> EditStep:
    """The step of one MaskEdit of a request (`edits[index]`); lists of ids and labels have at most
    `max_objects` entries."""
    which = msg.WhichOneof("edit")
    if which is None:
        raise invalid(f"edits[{index}]", "set one edit (select_objects, translate, trim, ...)")
    path = f"edits[{index}].{which}"
    body = getattr(msg, which)
    if hasattr(body, "object_ids"):
        _check_count(body.object_ids, f"{path}.object_ids", max_objects, "object ids")
    if which in ("select_objects", "drop_objects"):
        _check_labels(list(body.labels), f"{path}.labels", max_objects)
        fn = edit.select_objects if which == "select_objects" else edit.drop_objects
        return EditStep(path, partial(fn, object_ids=list(body.object_ids), labels=list(body.labels)), {})
    if which == "relabel_objects":
        labels = dict(body.labels)
        _check_labels(labels, f"{path}.labels", max_objects)
        return EditStep(path, partial(edit.relabel_objects, labels=labels), {})
    ids = list(getattr(body, "object_ids", ()))
    if which == "translate":
        name, offset = _pick(
            body, "motion", {"constant_offset": _offset, "offset_trajectory": trajectory}, path
        )
        return EditStep(path, partial(edit.translate, offset=offset, object_ids=ids), {"offset": name})
    if which == "scale":
        name, factor = _pick(
            body, "factor", {"constant_factor": _constant, "factor_trajectory": trajectory}, path
        )
        return EditStep(path, partial(edit.scale, factor=factor, object_ids=ids), {"factor": name})
    if which == "rotate":
        convert = {"constant_degrees": _constant, "degrees_trajectory": trajectory}
        name, degrees = _pick(body, "angle", convert, path)
        return EditStep(path, partial(edit.rotate, degrees=degrees, object_ids=ids), {"degrees": name})
    if which in ("dilate", "erode"):
        fn = edit.dilate if which == "dilate" else edit.erode
        return EditStep(path, partial(fn, radius_pixels=body.radius_pixels, object_ids=ids), {})
    if which == "trim":
        end = body.end_frame if body.HasField("end_frame") else None
        return EditStep(path, partial(edit.trim, start_frame=body.start_frame, end_frame=end), {})
    if which == "retime":
        return EditStep(
            path,
            partial(edit.retime, speed=body.speed),
            {},
            lambda seq: edit.retime_num_frames(seq.num_frames, body.speed),
            "speed",
        )
    if which == "reverse":
        return EditStep(path, edit.reverse, {})
    if which == "loop":
        length = body.WhichOneof("length")
        if length is None:
            raise invalid(f"{path}.repeat_count", "set repeat_count or target_num_frames")
        kwargs = {length: getattr(body, length), "ping_pong": body.ping_pong}
        return EditStep(
            path,
            partial(edit.loop, **kwargs),
            {},
            lambda seq: edit.loop_num_frames(seq.num_frames, **kwargs),
            length,
        )
    if which == "resample_fps":
        try:
            edit.check_fps(body.fps)
        except FieldError as exc:
            raise field_violation(exc, path) from None
        return EditStep(
            path,
            partial(edit.resample_fps, fps=body.fps),
            {},
            lambda seq: edit.resample_num_frames(seq.num_frames, seq.fps, body.fps),
            "fps",
        )
    if which == "time_warp":
        if not body.HasField("source_frames"):
            raise invalid(f"{path}.source_frames", "required: keyframes of source frame indices")
        curve = trajectory(body.source_frames, f"{path}.source_frames")
        count = body.num_frames or None
        if count is not None and count < 0:
            raise invalid(f"{path}.num_frames", f"must be >= 0, got {count}")
        return EditStep(
            path,
            partial(edit.time_warp, source_frames=curve, num_frames=count),
            {},
            lambda seq: count or curve.last_frame + 1,
            "num_frames" if count else "source_frames",
        )
    raise invalid(path, f"unsupported edit {which}")  # a newer client's edit this server does not know


# -- ComposeMasks ---------------------------------------------------------------------------------------------


def compose_args(request: masks_pb2.ComposeMasksRequest, limits: SizeLimits) -> tuple[list[Layer], dict]:
    """(layers, keyword arguments of `compose`) of a request, validated and size-checked."""
    if not request.layers:
        raise invalid("layers", "give at least one layer")
    if len(request.layers) > limits.max_layers:
        raise invalid(
            "layers", f"at most {limits.max_layers} layers, got {len(request.layers)}", reason=TOO_LARGE
        )
    for name in ("width", "height", "num_frames"):
        if getattr(request, name) < 0:
            raise invalid(name, f"must be >= 0 (0: default), got {getattr(request, name)}")
    if request.fps < 0 or not math.isfinite(request.fps) or 0 < request.fps < edit.MIN_FPS:
        raise invalid(
            "fps", f"must be at least {edit.MIN_FPS:g}, or 0 for the first layer's, got {request.fps:g}"
        )
    layers = []
    for i, layer in enumerate(request.layers):
        seq = mask_sequence(layer.mask_sequence, f"layers[{i}].mask_sequence", limits)
        if layer.start_frame < 0:
            raise invalid(f"layers[{i}].start_frame", f"must be >= 0, got {layer.start_frame}")
        layers.append(Layer(seq, layer.z_order, layer.start_frame))
    first = layers[0].sequence
    width, height = request.width or first.width, request.height or first.height
    fps = request.fps or first.fps
    if fps < edit.MIN_FPS:  # the first layer's own rate, taken as the output's
        raise invalid(
            "layers[0].mask_sequence.fps",
            f"the composition takes the first layer's fps, {fps:g}, below the lowest rate it resamples to "
            f"({edit.MIN_FPS:g}); set fps",
        )
    if request.num_frames:
        limits.check("num_frames", request.num_frames, width, height, "the composition")
    else:
        ends = [layer.start_frame + edit.resample_num_frames(layer.sequence.num_frames, layer.sequence.fps, fps)
                for layer in layers]  # fmt: skip
        last = max(range(len(layers)), key=ends.__getitem__)
        limits.check(f"layers[{last}].start_frame", ends[last], width, height, "the composition")
    kwargs = {
        "width": request.width or None,
        "height": request.height or None,
        "fps": request.fps or None,
        "num_frames": request.num_frames or None,
        "keep_object_ids": request.keep_object_ids,
    }
    return layers, kwargs


# -- SynthesizeMasks ------------------------------------------------------------------------------------------

SYNTH_RENAMES = {
    "center": "center_trajectory",
    "scale": "scale_trajectory",
    "rotation": "rotation_trajectory",
}


def synth_args(request: masks_pb2.SynthesizeMasksRequest, limits: SizeLimits) -> list[SyntheticObject]:
    """The objects of a request, validated (frame size and count are checked by `synthesize`)."""
    if request.width > 0 and request.height > 0 and request.num_frames > 0:
        limits.check("num_frames", request.num_frames, request.width, request.height)
    if len(request.objects) > limits.max_objects:
        raise invalid(
            "objects", f"at most {limits.max_objects} objects, got {len(request.objects)}", reason=TOO_LARGE
        )
    objects = []
    for i, obj in enumerate(request.objects):
        path = f"objects[{i}]"
        if obj.shape == masks_pb2.SHAPE_MASK:
            if not obj.HasField("mask_template"):
                raise invalid(f"{path}.mask_template", "required when shape is SHAPE_MASK")
            template_msg = obj.mask_template
            source = mask_sequence(template_msg.mask_sequence, f"{path}.mask_template.mask_sequence", limits)
            try:
                shape: object = MaskTemplate.from_sequence(
                    source, template_msg.object_id, template_msg.frame_index
                )
            except FieldError as exc:
                raise field_violation(exc, f"{path}.mask_template") from None
        elif obj.shape in _SHAPES:
            shape = _SHAPES[obj.shape]
        else:
            raise invalid(
                f"{path}.shape", "required: SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_ELLIPSE or SHAPE_MASK"
            )
        if len(obj.label) > MAX_LABEL_CHARS:
            raise invalid(
                f"{path}.label", f"a label is at most {MAX_LABEL_CHARS} characters, got {len(obj.label)}"
            )
        if not obj.HasField("center_trajectory"):
            raise invalid(f"{path}.center_trajectory", "required: at least one keyframe of the centre")
        center = trajectory(obj.center_trajectory, f"{path}.center_trajectory")
        scale = (
            trajectory(obj.scale_trajectory, f"{path}.scale_trajectory")
            if obj.HasField("scale_trajectory")
            else 1.0
        )
        rotation = (
            trajectory(obj.rotation_trajectory, f"{path}.rotation_trajectory")
            if obj.HasField("rotation_trajectory")
            else 0.0
        )
        objects.append(
            SyntheticObject(
                shape,  # type: ignore[arg-type]
                center,
                width=obj.width or None,
                height=obj.height or None,
                scale=scale,
                rotation=rotation,
                label=obj.label or None,
            )
        )
    return objects


def synth_error(error: FieldError) -> Exception:
    """A `synthesize` FieldError (`objects[2].center...`) at its request field (`objects[2].center_trajectory...`)."""
    head, dot, rest = error.field.partition(".")
    if head.startswith("objects[") and rest:
        return field_violation(FieldError(rest, error.reason), head, SYNTH_RENAMES)
    return field_violation(error)
