"""What a video engine is asked (`VideoRequest`), what it runs (`VideoJob`) and what it can run (`EngineSpec`).
No torch here: the video service plans and stores jobs, and the demo sizes its masks, without loading a model.

    spec = spec_from_dir("generation/mvideo/shapes/default")     # sizes from the configs, sampling from engine.json
    job = plan(VideoRequest(prompt="a red circle", masks=seq), spec, VideoLimits())

`plan` resolves every default and checks every rule of the engine, raising `libs.errors.FieldError` whose field is
the request's (`width`, `num_frames`, `masks.objects`, ...). Rules (our choices):

- fps: the request's, else the mask sequence's, else the engine's; masks are resampled to it (the frame count
  that gives is checked against the limits before any resampling is done).
- width/height/num_frames: the request's, else the mask sequence's, else the engine's. A request value that
  disagrees with the masks is an error naming the request field; a size the engine cannot take is an error
  naming the request field, or `masks` when the size came from the masks. Sizes are never rounded: the masks
  would no longer match the pixels they condition.
- frames: 1 + k * the engine's temporal step, at most `VideoLimits.max_frames`; longer than one clip only for
  engines that continue clip by clip (`EngineSpec.long_video`, MVideo), one clip at most for the others (VACE).
- A reference video is only checked here; its masks are extracted when the job runs (`fit_masks` sizes them).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generation.masks import edit
from generation.masks.defaults import BOX_THRESHOLD, TEXT_THRESHOLD
from generation.mvideo.defaults.engine_file import ENGINE_FILE, TEXT_ONLY_MODEL, read_engine_defaults
from libs.errors import FieldError
from libs.media import MaskSequence

MIN_FPS, MAX_FPS = 1e-3, 1000.0
"""Frame rates a video can be encoded at (the MP4 rate is a fraction over 1001: below 1e-3 it is 0)."""
TOO_LARGE = "MASK_SEQUENCE_TOO_LARGE"
"""The machine-readable reason of a job over the server's size limits."""


@dataclass(frozen=True)
class EngineSpec:
    """Defaults and size rules of a loaded engine."""

    name: str
    model_version: str
    height: int
    width: int
    num_frames: int
    """Frames of one clip: the default; longer videos are made clip by clip when `long_video`."""
    fps: float
    size_multiple: int
    frame_step: int
    """num_frames must be 1 + k * frame_step."""
    num_mask_slots: int
    num_inference_steps: int
    guidance_scale: float
    max_text_length: int | None = None
    long_video: bool = False
    """Videos longer than one clip are made clip by clip; False: one clip at most."""
    max_height: int | None = None
    max_width: int | None = None
    """The largest frame the transformer renders (None: no bound; see `renderable_size`)."""
    text_only: str = TEXT_ONLY_MODEL
    """A request without masks: "model" runs the model's own text-only branch, "layout" plans masks from the
    prompt first (`engine_file.TEXT_ONLY_MODES`, `generation.mvideo.shapes.layout`)."""


@dataclass(frozen=True)
class VideoLimits:
    """The largest job a server takes (operators set them; see the video service's flags)."""

    max_frames: int = 256
    max_pixels: int = 1 << 26
    """frames x width x height of the output (67M: 256 frames of 512 x 512)."""
    max_steps: int = 1000


@dataclass(frozen=True)
class ReferenceVideo:
    """Motion taken from a video: the objects `text_query` names, tracked with GroundingDINO + SAM2."""

    video: bytes | str
    """The video's bytes, or the path of a local file."""
    text_query: str
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD


@dataclass(frozen=True)
class VideoRequest:
    """What a client asks for; None means "the default" (the masks', else the engine's)."""

    prompt: str
    negative_prompt: str = ""
    masks: MaskSequence | None = None
    reference: ReferenceVideo | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: float | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    mask_guidance_scale: float = 1.0
    mask_guidance_start: float = 0.0
    mask_guidance_end: float = 1.0
    seed: int | None = None
    preview_every: int | None = None
    """A preview every this many steps (0: none; None: four over the job)."""
    preview_frames: int = 1
    preview_max_edge: int = 128


@dataclass(frozen=True)
class VideoJob:
    """One fully resolved generation: every size and setting decided, masks at the output's size and fps."""

    engine: str
    prompt: str
    negative_prompt: str
    masks: MaskSequence | None
    reference: ReferenceVideo | None
    height: int
    width: int
    num_frames: int
    fps: float
    num_inference_steps: int
    guidance_scale: float
    mask_guidance_scale: float
    mask_guidance_start: float
    mask_guidance_end: float
    seed: int | None
    preview_every: int
    """A low-res preview every this many steps (0: none), passed to `on_step`."""
    preview_frames: int = 1
    preview_max_edge: int = 128


def plan(request: VideoRequest, spec: EngineSpec, limits: VideoLimits) -> VideoJob:
    """Resolve `request`'s defaults against `spec` and check it against the engine's rules and `limits`."""
    if request.masks is not None and request.reference is not None:
        raise FieldError("masks", "give masks or a reference video, not both")
    masks = request.masks
    fps = request.fps or (masks.fps if masks is not None else spec.fps)
    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        where = "fps" if request.fps or masks is None else "masks"
        raise FieldError(where, f"fps must be within [{MIN_FPS:g}, {MAX_FPS:g}], got {fps:g}")
    mask_frames = None
    if masks is not None:
        mask_frames = edit.resample_num_frames(masks.num_frames, masks.fps, fps)
    sizes = {}
    for field, mask_value, default in (
        ("width", masks.width if masks else None, spec.width),
        ("height", masks.height if masks else None, spec.height),
        ("num_frames", mask_frames, spec.num_frames),
    ):
        asked = getattr(request, field)
        if asked and mask_value is not None and asked != mask_value:
            raise FieldError(
                field,
                f"{field}={asked} disagrees with the mask sequence's {mask_value} (leave it 0 to take the masks')",
            )
        sizes[field] = asked or mask_value or default
    width, height, num_frames = sizes["width"], sizes["height"], sizes["num_frames"]

    def blame(field: str) -> str:
        """The field to blame for a size: the request's when it gave one, else the masks' it came from."""
        return field if getattr(request, field) or masks is None else "masks"

    for field, value in (("width", width), ("height", height)):
        if value % spec.size_multiple:
            raise FieldError(
                blame(field),
                f"{field} must be a multiple of {spec.size_multiple} for {spec.name}, got {value}",
            )
    for field, value, largest in (("width", width, spec.max_width), ("height", height, spec.max_height)):
        if largest is not None and value > largest:
            raise FieldError(
                blame(field),
                f"{field} must be at most {largest} for {spec.name} (its transformer renders at most "
                f"{spec.max_width}x{spec.max_height}), got {value}",
            )
    max_frames = limits.max_frames if spec.long_video else min(limits.max_frames, spec.num_frames)
    if num_frames > max_frames:
        why = (
            "this server's limit"
            if spec.long_video
            else f"one clip of {spec.name}, which does not continue clips"
        )
        raise FieldError(
            blame("num_frames"),
            f"{num_frames} frames is more than this server generates ({max_frames}: {why})",
            code=TOO_LARGE,
        )
    if (num_frames - 1) % spec.frame_step:
        raise FieldError(
            blame("num_frames"),
            f"num_frames must be 1 + k * {spec.frame_step} for {spec.name}, got {num_frames}",
        )
    if num_frames * width * height > limits.max_pixels:
        raise FieldError(
            blame("num_frames"),
            f"{num_frames} frames of {width}x{height} is over this server's limit",
            code=TOO_LARGE,
        )
    if masks is not None and len(masks.objects) > spec.num_mask_slots:
        raise FieldError(
            "masks.objects",
            f"{len(masks.objects)} objects but {spec.name} conditions on at most {spec.num_mask_slots}",
        )
    if masks is not None and not math.isclose(masks.fps, fps, rel_tol=1e-6):
        masks = edit.resample_fps(masks, fps)

    steps = request.num_inference_steps or spec.num_inference_steps
    if steps > limits.max_steps:
        raise FieldError("num_inference_steps", f"at most {limits.max_steps}, got {steps}")
    if request.mask_guidance_end < request.mask_guidance_start:
        raise FieldError(
            "mask_guidance_end",
            f"must be >= mask_guidance_start ({request.mask_guidance_start}), got {request.mask_guidance_end}",
        )
    preview_every = max(1, steps // 4) if request.preview_every is None else request.preview_every
    return VideoJob(
        engine=spec.name,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        masks=masks,
        reference=request.reference,
        height=height,
        width=width,
        num_frames=num_frames,
        fps=float(fps),
        num_inference_steps=steps,
        guidance_scale=spec.guidance_scale if request.guidance_scale is None else request.guidance_scale,
        mask_guidance_scale=request.mask_guidance_scale,
        mask_guidance_start=request.mask_guidance_start,
        mask_guidance_end=request.mask_guidance_end,
        seed=request.seed,
        preview_every=min(preview_every, steps),
        preview_frames=min(request.preview_frames or 1, num_frames),
        preview_max_edge=min(request.preview_max_edge or 128, 1024),
    )


def fit_masks(seq: MaskSequence, width: int, height: int, num_frames: int, max_objects: int) -> MaskSequence:
    """An extracted sequence at the output size: best `max_objects` objects, nearest resize, even resampling."""
    seq = edit.keep_best_objects(seq, max_objects)
    if seq.num_frames == 0:
        raise FieldError("reference.video", "the reference video has no frames")
    frames = np.linspace(0, seq.num_frames - 1, num_frames).round().astype(int)
    rows = (np.arange(height) * seq.height / height).astype(int)
    cols = (np.arange(width) * seq.width / width).astype(int)
    id_maps = np.stack([seq.id_map(int(t))[rows][:, cols] for t in frames])
    present = set(np.unique(id_maps).tolist()) - {0}
    objects = [o for o in seq.objects if o.id in present]
    fps = seq.fps * (num_frames / seq.num_frames)
    return MaskSequence.from_id_maps(id_maps, objects, fps)


# -- specs of pipeline folders ------------------------------------------------------------------------------------


def renderable_size(transformer: dict, spatial: int) -> tuple[int | None, int | None]:
    """The largest (height, width) a transformer config renders; None where it has no bound.

    Our reading of diffusers' CogVideoX (which MVideo follows): with temporal patches (`patch_size_t`, CogVideoX
    1.5) and rotary embeddings the embeddings are cut from a grid of `sample_height x sample_width` patches, so a
    larger latent fails at its first step; CogVideoX 1.0 (sin-cos, or rotary made for any grid) has no bound.
    """
    if transformer.get("use_rotary_positional_embeddings") and transformer.get("patch_size_t") is not None:
        return int(transformer["sample_height"]) * spatial, int(transformer["sample_width"]) * spatial
    return None, None


def spec_from_dir(path: str | os.PathLike[str], fallback_sampling: dict | None = None) -> EngineSpec:
    """The spec of an MVideo pipeline folder: sizes from its JSON configs, sampling from its `engine.json`, else
    `fallback_sampling` (the engine loader passes the pipeline's call defaults for a published folder)."""
    root = Path(path)
    transformer = json.loads((root / "transformer" / "config.json").read_text())
    mask_encoder = json.loads((root / "mask_encoder" / "config.json").read_text())
    vae = json.loads((root / "vae" / "config.json").read_text())
    spatial = mask_encoder.get("spatial_compression_ratio") or vae.get("spatial_compression_ratio") or 8
    temporal = mask_encoder.get("temporal_compression_ratio") or vae.get("temporal_compression_ratio") or 4
    sampling = read_engine_defaults(root) or fallback_sampling
    if sampling is None:
        raise FileNotFoundError(f"{root} has no {ENGINE_FILE}; pass fallback_sampling (or save one)")
    max_height, max_width = renderable_size(transformer, spatial)
    version_file = root / "VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else f"mvideo-{root.name}"
    return EngineSpec(
        name="mvideo",
        model_version=version,
        height=int(transformer["sample_height"]) * spatial,
        width=int(transformer["sample_width"]) * spatial,
        num_frames=int(transformer["sample_frames"]),
        fps=float(sampling["fps"]),
        size_multiple=spatial * int(transformer.get("patch_size", 1)),
        frame_step=temporal,
        num_mask_slots=int(mask_encoder["num_mask_slots"]),
        num_inference_steps=int(sampling["num_inference_steps"]),
        guidance_scale=float(sampling["guidance_scale"]),
        max_text_length=transformer.get("max_text_seq_length"),
        long_video=True,
        max_height=max_height,
        max_width=max_width,
        text_only=sampling.get("text_only", TEXT_ONLY_MODEL),
    )
