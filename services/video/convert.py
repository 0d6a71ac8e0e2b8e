"""CreateVideoRequest -> a planned `generation.mvideo.jobs.VideoJob`, every bad input INVALID_ARGUMENT naming its
request field.

The servicer calls `video_job` once, before storing the operation: what the request says is checked here
(required prompt, signs and ranges, the engine served, the mask condition decoded within the size limits, a
reference video readable); defaults and the engine's rules are `plan`'s (generation/mvideo/jobs.py), whose
errors name domain fields that `field_violation` renames to the request's (`masks` -> the mask field used,
`reference` -> `reference_video`, `mask_guidance_end` -> `mask_strength_schedule.end_fraction`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kmono.video.v1 import video_pb2

from generation.masks.defaults import BOX_THRESHOLD, TEXT_THRESHOLD
from generation.mvideo.jobs import EngineSpec, ReferenceVideo, VideoJob, VideoLimits, VideoRequest, plan
from libs.errors import FieldError
from libs.media import MaskSequence, load, loads
from libs.media.refs import file_uri_path
from libs.serving import InvalidArgumentError
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
from services.video.artifacts import ArtifactStore, parse_artifact_name

MAX_PROMPT_CHARS = 2000
ENGINE_NAMES = {
    video_pb2.ENGINE_UNSPECIFIED: "mvideo",
    video_pb2.ENGINE_MVIDEO: "mvideo",
    video_pb2.ENGINE_VACE: "vace",
}
ENGINE_ENUMS = {"mvideo": video_pb2.ENGINE_MVIDEO, "vace": video_pb2.ENGINE_VACE}


@dataclass(frozen=True)
class RequestLimits(VideoLimits):
    """The engine's limits plus what only the request's form has: inline mask bytes."""

    max_inline_mask_bytes: int = 8 << 20


def read_mask_uri(uri: str, artifacts: ArtifactStore | None, limits: RequestLimits) -> MaskSequence:
    """The mask sequence at a `file://` URI, an absolute path, an artifact name or another fsspec URL."""
    field = "mask_sequence_uri"
    try:
        if parse_artifact_name(uri) is not None:
            if artifacts is None or not artifacts.exists(uri):
                raise invalid(field, f"no artifact {uri}")
            data = artifacts.read(uri)
            fmt = "pb"
        else:
            path = file_uri_path(uri)
            if path is not None:
                if not path.is_file():
                    raise invalid(field, f"no such file {path}")
                if path.stat().st_size > limits.max_inline_mask_bytes * 8:
                    raise invalid(field, f"{path} is larger than this server reads", reason=TOO_LARGE)
                return load(path)
            if "://" not in uri:
                raise invalid(
                    field, f"unsupported URI {uri!r}; use file://, an artifact name or an fsspec URL"
                )
            import fsspec

            with fsspec.open(uri, "rb") as f:
                data = f.read()
            ext = os.path.splitext(uri)[1].lower().lstrip(".")
            fmt = ext if ext in ("json", "npz", "pb", "zip") else None
        return loads(data, fmt)  # type: ignore[arg-type]
    except InvalidArgumentError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise invalid(field, f"cannot read a mask sequence from {uri!r}: {exc}") from None


def _reference(ref: video_pb2.ReferenceVideo) -> ReferenceVideo:
    if not ref.text_query.strip():
        raise invalid("reference_video.text_query", "required: the objects to track, e.g. `ball.`")
    for name in ("box_threshold", "text_threshold"):
        finite(getattr(ref, name), f"reference_video.{name}", high=1.0)
    _, source, _ = probe_media(ref.video, "reference_video.video")
    return ReferenceVideo(
        video=source,
        text_query=ref.text_query,
        box_threshold=ref.box_threshold or BOX_THRESHOLD,
        text_threshold=ref.text_threshold or TEXT_THRESHOLD,
    )


def engine_name(request: video_pb2.CreateVideoRequest, served: Mapping[str, EngineSpec]) -> str:
    name = ENGINE_NAMES.get(request.engine)
    if name is None:
        raise invalid("engine", f"unknown engine {request.engine}; use ENGINE_MVIDEO or ENGINE_VACE")
    if name not in served:
        raise invalid("engine", f"engine {name} is not served by this server (served: {', '.join(served)})")
    return name


def video_job(
    request: video_pb2.CreateVideoRequest,
    specs: Mapping[str, EngineSpec],
    limits: RequestLimits,
    artifacts: ArtifactStore | None = None,
) -> VideoJob:
    """Validate `request` against the served engines and limits and plan its job."""
    if not request.prompt.strip():
        raise invalid("prompt", "required: what the video shows, e.g. `a red circle moves right`")
    if len(request.prompt) > MAX_PROMPT_CHARS:
        raise invalid("prompt", f"at most {MAX_PROMPT_CHARS} characters, got {len(request.prompt)}")
    check_request_id(request.request_id)
    spec = specs[engine_name(request, specs)]
    for name in ("width", "height", "num_frames", "num_inference_steps"):
        if getattr(request, name) < 0:
            raise invalid(name, f"must be >= 0 (0: default), got {getattr(request, name)}")
    finite(request.fps, "fps")

    masks = reference = None
    mask_field = request.WhichOneof("mask_condition") or "mask_sequence"
    if mask_field == "mask_sequence" and request.HasField("mask_sequence"):
        size = request.mask_sequence.ByteSize()
        if size > limits.max_inline_mask_bytes:
            raise invalid(
                "mask_sequence",
                f"inline mask sequence is {size} bytes, over this server's limit of {limits.max_inline_mask_bytes}; "
                "upload it and pass mask_sequence_uri",
                reason=TOO_LARGE,
            )
        masks = mask_sequence(request.mask_sequence, "mask_sequence", SizeLimits(limits.max_pixels * 4))
    elif mask_field == "mask_sequence_uri":
        masks = read_mask_uri(request.mask_sequence_uri, artifacts, limits)
    elif mask_field == "reference_video":
        reference = _reference(request.reference_video)

    guidance = None
    if request.HasField("guidance_scale"):
        guidance = finite(request.guidance_scale, "guidance_scale", high=100.0)
    mask_guidance = 1.0
    if request.HasField("mask_guidance_scale"):
        mask_guidance = finite(request.mask_guidance_scale, "mask_guidance_scale", high=100.0)
    start, end = 0.0, 1.0
    schedule = request.mask_strength_schedule
    if request.HasField("mask_strength_schedule") and (schedule.start_fraction or schedule.end_fraction):
        start = finite(schedule.start_fraction, "mask_strength_schedule.start_fraction", high=1.0)
        end = finite(schedule.end_fraction, "mask_strength_schedule.end_fraction", high=1.0)
    preview = request.preview_options
    for name in ("interval_steps", "num_frames", "max_edge_pixels"):
        if getattr(preview, name) < 0:
            raise invalid(f"preview_options.{name}", f"must be >= 0, got {getattr(preview, name)}")

    wanted = VideoRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        masks=masks,
        reference=reference,
        width=request.width or None,
        height=request.height or None,
        num_frames=request.num_frames or None,
        fps=request.fps or None,
        num_inference_steps=request.num_inference_steps or None,
        guidance_scale=guidance,
        mask_guidance_scale=mask_guidance,
        mask_guidance_start=start,
        mask_guidance_end=end,
        seed=request.seed if request.HasField("seed") else None,
        preview_every=preview.interval_steps if request.HasField("preview_options") else None,
        preview_frames=preview.num_frames,
        preview_max_edge=preview.max_edge_pixels,
    )
    renames = {
        "masks": mask_field,
        "reference": "reference_video",
        "mask_guidance_end": "mask_strength_schedule.end_fraction",
    }
    try:
        return plan(wanted, spec, limits)
    except FieldError as error:
        raise field_violation(error, renames=renames) from None
