"""CreateVideoRequest -> a planned `generation.mvideo.jobs.VideoJob`, every bad input INVALID_ARGUMENT naming its
request field.

The servicer calls `video_job` once, before storing the operation: what the request says is checked here
(required prompt, signs and ranges, the engine served, the mask condition decoded within the size limits, a
reference video readable); defaults and the engine's rules are `plan`'s (generation/mvideo/jobs.py), whose
errors name domain fields that `field_violation` renames to the request's (`masks` -> the mask field used,
`reference` -> `reference_video`, `mask_guidance_end` -> `mask_strength_schedule.end_fraction`).

References follow the server's `MediaPolicy` (`RequestLimits.media`): a `mask_sequence_uri` is an artifact name
of this server, or a URI the policy allows (by default none: `file://` only under the operator's media roots,
remote schemes only when listed); mask files are decoded within `RequestLimits.decode` from their headers before
anything is allocated, and every failure answers INVALID_ARGUMENT naming the field, without server paths or file
contents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from kmono.video.v1 import video_pb2

from generation.masks.defaults import BOX_THRESHOLD, TEXT_THRESHOLD
from generation.mvideo.jobs import EngineSpec, ReferenceVideo, VideoJob, VideoLimits, VideoRequest, plan
from libs.errors import FieldError
from libs.media import MaskSequence, loads
from libs.media.limits import DecodeLimits
from libs.media.policy import MediaPolicy, public_message
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

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 2000
MAX_MASK_FILE_BYTES_FACTOR = 8
"""A mask file by reference may be this many times `max_inline_mask_bytes` (64 MiB by default)."""
ENGINE_NAMES = {
    video_pb2.ENGINE_UNSPECIFIED: "mvideo",
    video_pb2.ENGINE_MVIDEO: "mvideo",
    video_pb2.ENGINE_VACE: "vace",
}
ENGINE_ENUMS = {"mvideo": video_pb2.ENGINE_MVIDEO, "vace": video_pb2.ENGINE_VACE}


@dataclass(frozen=True)
class RequestLimits(VideoLimits):
    """The engine's limits plus what only the request's form has: inline mask bytes, the references the server
    follows (`media`: by default the KMONO_MEDIA_* environment's policy, which allows none) and the decoders'
    limits for mask files and reference videos (`decode`; its `max_pixels` is tightened to 4 x `max_pixels`)."""

    max_inline_mask_bytes: int = 8 << 20
    media: MediaPolicy = field(default_factory=MediaPolicy.from_env)
    decode: DecodeLimits = field(default_factory=DecodeLimits)

    def mask_limits(self) -> DecodeLimits:
        """Limits of a mask sequence by reference: frames x pixels as for inline ones, and its file size."""
        decode = SizeLimits(self.max_pixels * 4).decode_limits(self.decode)
        max_bytes = min(decode.max_bytes, self.max_inline_mask_bytes * MAX_MASK_FILE_BYTES_FACTOR)
        return replace(decode, max_bytes=max_bytes)


MASK_FORMATS = ("json", "npz", "pb", "binpb", "zip")


def read_mask_uri(uri: str, artifacts: ArtifactStore | None, limits: RequestLimits) -> MaskSequence:
    """The mask sequence at an artifact name of this server, or at a URI `limits.media` allows (a `file://`
    URI or absolute path under a media root, a remote URL of an allowed scheme or under a URL root), decoded
    within `limits.mask_limits()`. Every failure is INVALID_ARGUMENT naming `mask_sequence_uri`."""
    name = "mask_sequence_uri"
    decode = limits.mask_limits()
    try:
        if parse_artifact_name(uri) is not None:
            if artifacts is None or not artifacts.exists(uri):
                raise FieldError(name, "no such artifact on this server")
            size = artifacts.size(uri)
            if size > decode.max_bytes:
                raise FieldError(
                    name, f"the artifact is {size} bytes, larger than this server reads", code=TOO_LARGE
                )
            data = artifacts.read(uri)
            fmt = "pb"
        else:
            data = limits.media.read_bytes(uri, name, decode.max_bytes)
            ext = os.path.splitext(uri.partition("?")[0])[1].lower().lstrip(".")
            fmt = ("pb" if ext == "binpb" else ext) if ext in MASK_FORMATS else None
        return loads(data, fmt, limits=decode)  # type: ignore[arg-type]
    except FieldError as error:
        if error.field == name:
            raise field_violation(error) from None
        message = public_message(f"not a readable mask sequence: {error}")
        raise invalid(name, message, reason=error.code) from None
    except ValueError as exc:
        raise invalid(name, public_message(f"not a readable mask sequence: {exc}")) from None
    except Exception:  # the artifact store's backend: the reference is unreadable, whatever went wrong
        logger.exception("reading mask_sequence_uri failed")
        raise invalid(name, "not readable") from None


def _reference(ref: video_pb2.ReferenceVideo, limits: RequestLimits) -> ReferenceVideo:
    if not ref.text_query.strip():
        raise invalid("reference_video.text_query", "required: the objects to track, e.g. `ball.`")
    for name in ("box_threshold", "text_threshold"):
        finite(getattr(ref, name), f"reference_video.{name}", high=1.0)
    _, source, _ = probe_media(ref.video, "reference_video.video", limits.media, limits.decode)
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
    for name in ("prompt", "negative_prompt"):
        if len(getattr(request, name)) > MAX_PROMPT_CHARS:
            raise invalid(name, f"at most {MAX_PROMPT_CHARS} characters, got {len(getattr(request, name))}")
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
        masks = mask_sequence(
            request.mask_sequence, "mask_sequence", SizeLimits(limits.max_pixels * 4), limits.decode
        )
    elif mask_field == "mask_sequence_uri":
        masks = read_mask_uri(request.mask_sequence_uri, artifacts, limits)
    elif mask_field == "reference_video":
        reference = _reference(request.reference_video, limits)

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
