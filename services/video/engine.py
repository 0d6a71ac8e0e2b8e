"""The generation engines the video worker keeps warm: a loaded pipeline behind a small interface.

`EngineSpec` says what an engine generates by default and which sizes it takes; it can be read from a pipeline
folder's JSON configs without torch (`spec_from_dir`), so clients such as the demo size their masks to it.
`PipelineEngine.generate` runs one job, calling `on_step(step, total, preview)` after every denoising step;
an exception raised there (cancellation, shutdown, deadline) stops the pipeline within that step.

A job longer than one clip runs through MVideo's clip-by-clip continuation (`generation.mvideo.longvideo`):
`step` counts across the clips (`total` = `long_video_steps`), previews show the clip being made, and one
clip's tensors live at a time. Engines without continuation (`EngineSpec.long_video=False`, VACE) take one
clip at most.

torch and diffusers are imported inside functions only: `kmono --help` imports this package's config.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from libs.media import MaskSequence

logger = logging.getLogger(__name__)

LONG_VIDEO_MOTION_STRENGTH = 0.9
"""Later clips of a long video start from the previous clip's low-res latents and run the last 90% of the steps
(`iter_long_video`'s default)."""

StepCallback = Callable[[int, int, np.ndarray | None], None]
"""on_step(steps_done, total_steps, preview (T, H, W, 3) uint8 or None); may raise to stop the job."""


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


@dataclass(frozen=True)
class GenerationJob:
    """One fully resolved generation (the worker builds it from a CreateVideoRequest)."""

    prompt: str
    negative_prompt: str
    masks: MaskSequence | None
    height: int
    width: int
    num_frames: int
    fps: float
    num_inference_steps: int
    guidance_scale: float
    mask_guidance_scale: float
    mask_guidance_start: float
    mask_guidance_end: float
    seed: int
    preview_every: int
    """A low-res preview every this many steps (0: none), passed to `on_step`."""


class Engine(Protocol):
    spec: EngineSpec

    def generate(self, job: GenerationJob, on_step: StepCallback) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of the video."""
        ...


TINY_SPEC = EngineSpec(
    name="mvideo",
    model_version="mvideo-tiny-random",
    height=32,
    width=32,
    num_frames=9,
    fps=8.0,
    size_multiple=16,
    frame_step=4,
    num_mask_slots=2,
    num_inference_steps=2,
    guidance_scale=1.0,
    max_text_length=16,
    long_video=True,
)


def spec_from_dir(path: str | os.PathLike[str]) -> EngineSpec:
    """The spec of an MVideo pipeline folder, from its JSON configs (no torch)."""
    root = Path(path)
    transformer = json.loads((root / "transformer" / "config.json").read_text())
    mask_encoder = json.loads((root / "mask_encoder" / "config.json").read_text())
    vae = json.loads((root / "vae" / "config.json").read_text())
    spatial = mask_encoder.get("spatial_compression_ratio") or vae.get("spatial_compression_ratio") or 8
    temporal = mask_encoder.get("temporal_compression_ratio") or vae.get("temporal_compression_ratio") or 4
    shapes = "PixelSpaceAutoencoder" in str(vae.get("_class_name", ""))
    version_file = root / "VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else f"mvideo-{root.name}"
    return EngineSpec(
        name="mvideo",
        model_version=version,
        height=int(transformer["sample_height"]) * spatial,
        width=int(transformer["sample_width"]) * spatial,
        num_frames=int(transformer["sample_frames"]),
        fps=8.0,
        size_multiple=spatial * int(transformer.get("patch_size", 1)),
        frame_step=temporal,
        num_mask_slots=int(mask_encoder["num_mask_slots"]),
        num_inference_steps=SHAPES_SAMPLING["num_inference_steps"] if shapes else 50,
        guidance_scale=1.0 if shapes else 6.0,
        max_text_length=transformer.get("max_text_seq_length"),
        long_video=True,
    )


def _to_uint8(video: Any) -> np.ndarray:
    return np.clip(np.rint(np.asarray(video, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


@dataclass
class PipelineEngine:
    """`Engine` over an MVideoPipeline or MaskGuidedVACEPipeline (same call surface)."""

    pipe: Any
    spec: EngineSpec
    step_delay: float = 0.0

    def generate(self, job: GenerationJob, on_step: StepCallback) -> np.ndarray:
        import torch

        long = self.spec.long_video and job.num_frames > self.spec.num_frames
        total = job.num_inference_steps
        if long:
            from generation.mvideo.longvideo import iter_long_video, long_video_steps

            total = long_video_steps(
                job.num_frames, self.spec.num_frames, total, LONG_VIDEO_MOTION_STRENGTH, self.spec.frame_step
            )
        steps_done = itertools.count(1)  # across clips: the pipeline's own step index restarts in each

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            if self.step_delay:
                time.sleep(self.step_delay)
            preview = kwargs.get("preview")  # (B, T, 3, H', W') in [0, 1], on preview steps only
            frames = None
            if preview is not None:
                frames = _to_uint8(preview[0].permute(0, 2, 3, 1).float().cpu().numpy())  # (T, H', W', 3)
            on_step(next(steps_done), total, frames)
            return {}

        options: dict[str, Any] = dict(
            negative_prompt=job.negative_prompt or None,
            height=job.height,
            width=job.width,
            num_inference_steps=job.num_inference_steps,
            guidance_scale=job.guidance_scale,
            mask_guidance_scale=job.mask_guidance_scale,
            mask_guidance_start=job.mask_guidance_start,
            mask_guidance_end=job.mask_guidance_end,
            generator=torch.Generator("cpu").manual_seed(job.seed),
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=[],
            preview_every=job.preview_every or None,
        )
        if self.spec.max_text_length:
            options["max_sequence_length"] = self.spec.max_text_length
        if long:
            chunks = iter_long_video(
                self.pipe,
                job.prompt,
                job.masks,
                self.spec.num_frames,
                num_frames=job.num_frames,
                motion_strength=LONG_VIDEO_MOTION_STRENGTH,
                **options,
            )
            return np.concatenate([_to_uint8(chunk.frames[0]) for chunk in chunks])
        out = self.pipe(
            job.prompt, mask_video=job.masks, num_frames=job.num_frames, output_type="np", **options
        )
        return _to_uint8(out.frames[0])


def torch_dtype(name: str, device: str) -> Any:
    """The torch dtype of a `--dtype` name; auto: bfloat16 on CUDA (the published models' dtype), else float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"unknown dtype {name!r}; choose auto, bfloat16, float16 or float32")
    return getattr(torch, name)


def load_mvideo_engine(
    *,
    path: str | None,
    tiny: bool,
    device: str | None = None,
    dtype: str = "auto",
    torch_threads: int = 0,
    step_delay: float = 0.0,
) -> PipelineEngine:
    """Load the MVideo engine once: tiny random components, or a pipeline folder (the shapes default)."""
    import torch

    from generation.mvideo.pipelines import MVideoPipeline, load_pipeline

    if torch_threads:
        torch.set_num_threads(torch_threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    weights = torch_dtype(dtype, device)
    if tiny:
        from generation.mvideo.pipelines.testing import tiny_mvideo_components

        pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
        if weights != torch.float32:
            pipe = pipe.to(dtype=weights)
        spec = TINY_SPEC
    else:
        if path is None or not (Path(path) / "model_index.json").is_file():
            raise FileNotFoundError(
                f"no MVideo pipeline at {path}; pass --engine-path (e.g. the shapes-world default, reproduced by "
                "`kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default`) "
                "or --tiny-engine"
            )
        pipe = load_pipeline("mvideo", path, torch_dtype=weights)
        spec = spec_from_dir(path)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    logger.info("loaded %s (%s) on %s in %s", spec.model_version, spec.name, device, weights)
    return PipelineEngine(pipe, spec, step_delay=step_delay)


def load_vace_engine(
    path: str, *, device: str | None = None, dtype: str = "auto", step_delay: float = 0.0
) -> PipelineEngine:
    """Load Wan2.1-VACE behind MVideo's surface (bfloat16 on CUDA by default; its VAE stays float32)."""
    import torch

    from generation.mvideo.pipelines import load_pipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline("vace", path, torch_dtype=torch_dtype(dtype, device)).to(device)
    pipe.set_progress_bar_config(disable=True)
    wan = pipe.pipe  # the diffusers WanVACEPipeline: its VAE and patch size fix the sizes it takes
    spec = EngineSpec(
        name="vace",
        model_version=f"vace-{Path(path).name}",
        height=480,  # Wan2.1's defaults: 81 frames of 832x480 at 16 fps
        width=832,
        num_frames=81,
        fps=16.0,
        size_multiple=wan.vae_scale_factor_spatial * wan.transformer.config.patch_size[1],
        frame_step=wan.vae_scale_factor_temporal,
        num_mask_slots=pipe.num_mask_slots,
        num_inference_steps=30,
        guidance_scale=5.0,
    )
    return PipelineEngine(pipe, spec, step_delay=step_delay)
