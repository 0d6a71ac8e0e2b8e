"""CreateVideoRequest -> a resolved generation plan, with every bad input as INVALID_ARGUMENT naming its field.

The servicer runs `resolve` before storing an operation (so a bad request never queues), and the worker runs
it again on the stored request (the mask sequence is read again from its URI; a reference video's masks are
extracted then). Resolution rules (our choices, following the proto's comments):

- engine: ENGINE_UNSPECIFIED is MVideo; an engine this server does not serve is INVALID_ARGUMENT `engine`.
- fps: the request's, else the mask sequence's, else the engine's; masks are resampled to it.
- width/height/num_frames: the request's, else the mask sequence's, else the engine's. A request value that
  disagrees with the mask sequence (after resampling) is INVALID_ARGUMENT naming the request field; sizes must
  be multiples the engine needs, frames 1 + k * the engine's temporal step and at most `max_frames`: longer
  than one clip only for engines that continue clip by clip (MVideo), one clip at most for the others (VACE).
- A mask sequence with more objects than the engine's mask slots is INVALID_ARGUMENT `<mask field>.objects`.
- A reference video's masks are resized (nearest) and resampled in time (evenly) to the output size, keeping the
  best-scored objects when there are more than slots.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kmono.common.v1 import media_pb2
from kmono.video.v1 import video_pb2

from generation.masks import edit
from libs.media import MaskSequence, load, loads
from libs.serving import InvalidArgumentError
from services.masks.convert import Limits, invalid, mask_sequence, probe_media
from services.masks.worker import file_uri_path
from services.video.artifacts import ArtifactStore, parse_artifact_name
from services.video.engine import EngineSpec, GenerationJob

TOO_LARGE = "MASK_SEQUENCE_TOO_LARGE"
MAX_REQUEST_ID_LENGTH = 128
MAX_PROMPT_CHARS = 2000
ENGINE_NAMES = {
    video_pb2.ENGINE_UNSPECIFIED: "mvideo",
    video_pb2.ENGINE_MVIDEO: "mvideo",
    video_pb2.ENGINE_VACE: "vace",
}
ENGINE_ENUMS = {"mvideo": video_pb2.ENGINE_MVIDEO, "vace": video_pb2.ENGINE_VACE}


@dataclass(frozen=True)
class RequestLimits:
    max_frames: int = 256
    max_pixels: int = 1 << 26
    max_inline_mask_bytes: int = 8 << 20
    max_steps: int = 1000


@dataclass(frozen=True)
class Reference:
    video: media_pb2.MediaRef
    text_query: str
    box_threshold: float
    text_threshold: float


@dataclass(frozen=True)
class Plan:
    """A validated request with the defaults resolved (masks decoded; a reference video still to extract)."""

    engine: str
    spec: EngineSpec
    masks: MaskSequence | None
    mask_field: str
    reference: Reference | None
    width: int
    height: int
    num_frames: int
    fps: float
    num_inference_steps: int
    guidance_scale: float
    mask_guidance_scale: float
    mask_guidance_start: float
    mask_guidance_end: float
    seed: int | None
    preview_every: int
    preview_frames: int
    preview_max_edge: int

    def job(self, prompt: str, negative_prompt: str, seed: int, masks: MaskSequence | None) -> GenerationJob:
        return GenerationJob(
            prompt=prompt,
            negative_prompt=negative_prompt,
            masks=masks,
            height=self.height,
            width=self.width,
            num_frames=self.num_frames,
            fps=self.fps,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            mask_guidance_scale=self.mask_guidance_scale,
            mask_guidance_start=self.mask_guidance_start,
            mask_guidance_end=self.mask_guidance_end,
            seed=seed,
            preview_every=self.preview_every,
        )


def _finite(value: float, field: str, *, low: float = 0.0, high: float | None = None) -> float:
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise invalid(field, f"must be {bound}, got {value}")
    return value


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
                if not Path(path).is_file():
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


def check_reference(ref: video_pb2.ReferenceVideo) -> Reference:
    if not ref.text_query.strip():
        raise invalid("reference_video.text_query", "required: the objects to track, e.g. `ball.`")
    for name in ("box_threshold", "text_threshold"):
        _finite(getattr(ref, name), f"reference_video.{name}", high=1.0)
    probe_media(ref.video, "reference_video.video")
    return Reference(ref.video, ref.text_query, ref.box_threshold, ref.text_threshold)


def resolve(
    request: video_pb2.CreateVideoRequest,
    specs: Mapping[str, EngineSpec],
    limits: RequestLimits,
    artifacts: ArtifactStore | None = None,
) -> Plan:
    """Validate `request` against the served engines and limits; INVALID_ARGUMENT naming the field."""
    if not request.prompt.strip():
        raise invalid("prompt", "required: what the video shows, e.g. `a red circle moves right`")
    if len(request.prompt) > MAX_PROMPT_CHARS:
        raise invalid("prompt", f"at most {MAX_PROMPT_CHARS} characters, got {len(request.prompt)}")
    if len(request.request_id) > MAX_REQUEST_ID_LENGTH:
        raise invalid("request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters (a UUID4 is 36)")
    name = ENGINE_NAMES.get(request.engine)
    if name is None:
        raise invalid("engine", f"unknown engine {request.engine}; use ENGINE_MVIDEO or ENGINE_VACE")
    if name not in specs:
        raise invalid("engine", f"engine {name} is not served by this server (served: {', '.join(specs)})")
    spec = specs[name]

    for field in ("width", "height", "num_frames", "num_inference_steps"):
        if getattr(request, field) < 0:
            raise invalid(field, f"must be >= 0 (0: default), got {getattr(request, field)}")
    if not math.isfinite(request.fps) or request.fps < 0:
        raise invalid("fps", f"must be > 0, or 0 for the default, got {request.fps}")

    masks: MaskSequence | None = None
    reference: Reference | None = None
    which = request.WhichOneof("mask_condition")
    mask_field = which or ""
    if which == "mask_sequence":
        size = request.mask_sequence.ByteSize()
        if size > limits.max_inline_mask_bytes:
            raise invalid(
                "mask_sequence",
                f"inline mask sequence is {size} bytes, over this server's limit of {limits.max_inline_mask_bytes}; "
                "upload it and pass mask_sequence_uri",
                reason=TOO_LARGE,
            )
        masks = mask_sequence(
            request.mask_sequence, "mask_sequence", Limits(limits.max_pixels * 4, max_objects=1 << 16)
        )
    elif which == "mask_sequence_uri":
        masks = read_mask_uri(request.mask_sequence_uri, artifacts, limits)
    elif which == "reference_video":
        reference = check_reference(request.reference_video)

    fps = request.fps or (masks.fps if masks is not None else spec.fps)
    if masks is not None and not math.isclose(masks.fps, fps, rel_tol=1e-6):
        masks = edit.resample_fps(masks, fps)
    sizes = {}
    for field, mask_value, default in (
        ("width", masks.width if masks else None, spec.width),
        ("height", masks.height if masks else None, spec.height),
        ("num_frames", masks.num_frames if masks else None, spec.num_frames),
    ):
        asked = getattr(request, field)
        if asked and mask_value is not None and asked != mask_value:
            raise invalid(
                field,
                f"{field}={asked} disagrees with the mask sequence's {mask_value} (leave it 0 to take the masks')",
            )
        sizes[field] = asked or mask_value or default
    width, height, num_frames = sizes["width"], sizes["height"], sizes["num_frames"]
    # The field to blame for a size the engine cannot take: the request's, else the masks'.
    for field, value in (("width", width), ("height", height)):
        where = field if getattr(request, field) or masks is None else mask_field
        if value % spec.size_multiple:
            raise invalid(
                where, f"{field} must be a multiple of {spec.size_multiple} for {name}, got {value}"
            )
    where = "num_frames" if request.num_frames or masks is None else mask_field
    max_frames = limits.max_frames if spec.long_video else min(limits.max_frames, spec.num_frames)
    if num_frames > max_frames:
        why = (
            "this server's limit" if spec.long_video else f"one clip of {name}, which does not continue clips"
        )
        raise invalid(
            where,
            f"{num_frames} frames is more than this server generates ({max_frames}: {why})",
            reason=TOO_LARGE,
        )
    if (num_frames - 1) % spec.frame_step:
        raise invalid(where, f"num_frames must be 1 + k * {spec.frame_step} for {name}, got {num_frames}")
    if num_frames * width * height > limits.max_pixels:
        raise invalid(
            where, f"{num_frames} frames of {width}x{height} is over this server's limit", reason=TOO_LARGE
        )
    if masks is not None and len(masks.objects) > spec.num_mask_slots:
        raise invalid(
            f"{mask_field}.objects",
            f"{len(masks.objects)} objects but {name} conditions on at most {spec.num_mask_slots}",
        )

    steps = request.num_inference_steps or spec.num_inference_steps
    if steps > limits.max_steps:
        raise invalid("num_inference_steps", f"at most {limits.max_steps}, got {steps}")
    guidance = spec.guidance_scale
    if request.HasField("guidance_scale"):
        guidance = _finite(request.guidance_scale, "guidance_scale", high=100.0)
    mask_guidance = 1.0
    if request.HasField("mask_guidance_scale"):
        mask_guidance = _finite(request.mask_guidance_scale, "mask_guidance_scale", high=100.0)
    start, end = 0.0, 1.0
    schedule = request.mask_strength_schedule
    if request.HasField("mask_strength_schedule") and (schedule.start_fraction or schedule.end_fraction):
        start = _finite(schedule.start_fraction, "mask_strength_schedule.start_fraction", high=1.0)
        end = _finite(schedule.end_fraction, "mask_strength_schedule.end_fraction", high=1.0)
        if end < start:
            raise invalid(
                "mask_strength_schedule.end_fraction", f"must be >= start_fraction ({start}), got {end}"
            )

    preview = request.preview_options
    for field in ("interval_steps", "num_frames", "max_edge_pixels"):
        if getattr(preview, field) < 0:
            raise invalid(f"preview_options.{field}", f"must be >= 0, got {getattr(preview, field)}")
    if request.HasField("preview_options"):
        preview_every = preview.interval_steps
    else:
        preview_every = max(1, steps // 4)
    return Plan(
        engine=name,
        spec=spec,
        masks=masks,
        mask_field=mask_field,
        reference=reference,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=fps,
        num_inference_steps=steps,
        guidance_scale=guidance,
        mask_guidance_scale=mask_guidance,
        mask_guidance_start=start,
        mask_guidance_end=end,
        seed=request.seed if request.HasField("seed") else None,
        preview_every=min(preview_every, steps),
        preview_frames=min(preview.num_frames or 1, num_frames),
        preview_max_edge=min(preview.max_edge_pixels or 128, 1024),
    )


def fit_masks(seq: MaskSequence, width: int, height: int, num_frames: int, max_objects: int) -> MaskSequence:
    """An extracted sequence at the output size: best `max_objects` objects, nearest resize, even resampling."""
    if len(seq.objects) > max_objects:
        best = sorted(seq.objects, key=lambda o: (-o.score, o.id))[:max_objects]
        seq = edit.select_objects(seq, object_ids=[o.id for o in best])
    if seq.num_frames == 0:
        raise invalid("reference_video.video", "the reference video has no frames")
    frames = np.linspace(0, seq.num_frames - 1, num_frames).round().astype(int)
    rows = (np.arange(height) * seq.height / height).astype(int)
    cols = (np.arange(width) * seq.width / width).astype(int)
    id_maps = np.stack([seq.id_map(int(t))[rows][:, cols] for t in frames])
    present = set(np.unique(id_maps).tolist()) - {0}
    objects = [o for o in seq.objects if o.id in present]
    fps = seq.fps * (num_frames / seq.num_frames) if seq.num_frames else seq.fps
    return MaskSequence.from_id_maps(id_maps, objects, fps)
