"""The video engine a service keeps warm: a loaded pipeline behind `generate(job, on_step)`.

    engine = load_mvideo_engine(path=SHAPES_DEFAULT_PATH)               # once per process, per device
    job = plan(VideoRequest(prompt="a red circle", masks=seq), engine.spec, VideoLimits())   # jobs.py
    video = engine.generate(job, on_step)                               # frames + the masks they follow

`generate` makes every decision about running the model: a reference video's masks are extracted (GroundingDINO
+ SAM2 through `generation.masks.engine`, loaded on first use) and fitted to the job's size; a job longer than one
clip runs through MVideo's clip-by-clip continuation (`generation.mvideo.longvideo`), `step` counting across the
clips (`total` = `long_video_steps`), previews showing the clip being made, one clip's tensors alive at a time.
Engines without continuation (`EngineSpec.long_video=False`, VACE) take one clip at most (`plan` refuses more).

`on_step(step, total, preview)` is called after every denoising step and `on_stage(name)` at each stage (and
after every extracted frame); either may raise (cancellation, shutdown, deadline) to stop the job there.

A job without masks or a reference video on an engine whose spec says `text_only="layout"` (the shapes default)
gets masks planned from its prompt first (`generation.mvideo.shapes.layout`); they are returned with the frames like
any other masks, so the client sees (and can edit) the motion it got.

`check_prompt(job)` says what the model will not read of the job's text, before it runs: prompt words its
tokenizer does not know (`generation.mvideo.vocabulary`; they are reported, never silently dropped), the same
for the negative prompt, and the words past the text window it reads (`EngineSpec.max_text_length`). The
service puts the result in the operation's metadata, the CLIs print it. Call it from the thread that runs
`generate` (our choice: the pipeline's tokenizer is then never used by two threads at once).

torch and diffusers are imported inside functions only: the service's config imports this package's defaults.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generation.masks.engine import ExtractionJob, MaskEngine
from generation.mvideo.defaults.engine_file import TEXT_ONLY_LAYOUT
from generation.mvideo.jobs import EngineSpec, VideoJob, fit_masks, renderable_size, spec_from_dir
from generation.mvideo.vocabulary import PromptCheck, check_prompt
from libs.errors import FieldError
from libs.media import MaskSequence

logger = logging.getLogger(__name__)

LONG_VIDEO_MOTION_STRENGTH = 0.9
"""Later clips of a long video start from the previous clip's low-res latents and run the last 90% of the steps
(`iter_long_video`'s default)."""
VACE_SAMPLING = {"fps": 16.0, "num_frames": 81, "height": 480, "width": 832, "num_inference_steps": 30}
"""Wan2.1-VACE's published defaults: 81 frames of 832x480 at 16 fps, 30 steps (guidance: the pipeline's own)."""

StepCallback = Callable[[int, int, np.ndarray | None], None]
"""on_step(steps_done, total_steps, preview (T, H, W, 3) uint8 or None); may raise to stop the job."""
StageCallback = Callable[[str], None]
"""on_stage(name): "extracting masks", "planning layout", "denoising"; may raise to stop the job."""

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
"""The random tiny MVideo of tests (`tiny_mvideo_components`)."""


@dataclass(frozen=True)
class GeneratedVideo:
    frames: np.ndarray
    """(T, H, W, 3) uint8."""
    masks: MaskSequence | None
    """The masks the video follows (a reference video's, extracted and fitted), None without a condition."""


def _to_uint8(video: Any) -> np.ndarray:
    return np.clip(np.rint(np.asarray(video, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _ignore_stage(name: str) -> None:
    return None


@dataclass
class PipelineEngine:
    """A warm MVideoPipeline or MaskGuidedVACEPipeline (same call surface) and what it takes (`spec`)."""

    pipe: Any
    spec: EngineSpec
    load_mask_engine: Callable[[], MaskEngine] | None = None
    """How reference videos get their masks (loaded on first use); None: reference videos are refused."""
    attention: str = "sdpa"
    """The attention backend in use (`set_attention_backend`)."""
    _mask_engine: MaskEngine | None = field(default=None, repr=False)

    def check_prompt(self, job: VideoJob) -> PromptCheck:
        """What the model will not read of `job`'s prompt and negative prompt (logged when anything)."""
        check = check_prompt(self.pipe.tokenizer, job.prompt, job.negative_prompt, self.spec.max_text_length)
        if self._plans_layout(job):
            check = dataclasses.replace(
                check, warnings=check.warnings + layout_warnings(job.prompt, self.spec)
            )
        for line in check.warnings:
            logger.info("%s", line)
        return check

    def generate(
        self, job: VideoJob, on_step: StepCallback, on_stage: StageCallback = _ignore_stage
    ) -> GeneratedVideo:
        import torch

        masks = job.masks
        if job.reference is not None:
            masks = self._reference_masks(job, on_stage)
        elif self._plans_layout(job):
            masks = self._planned_layout(job, on_stage)
        on_stage("denoising")
        long = self.spec.long_video and job.num_frames > self.spec.num_frames
        total = job.num_inference_steps
        if long:
            from generation.mvideo.longvideo import iter_long_video, long_video_steps

            total = long_video_steps(
                job.num_frames, self.spec.num_frames, total, LONG_VIDEO_MOTION_STRENGTH, self.spec.frame_step
            )
        steps_done = itertools.count(1)  # across clips: the pipeline's own step index restarts in each

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
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
            generator=torch.Generator("cpu").manual_seed(job.seed or 0),
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
                masks,
                self.spec.num_frames,
                num_frames=job.num_frames,
                motion_strength=LONG_VIDEO_MOTION_STRENGTH,
                **options,
            )
            frames = np.concatenate([_to_uint8(chunk.frames[0]) for chunk in chunks])
        else:
            out = self.pipe(
                job.prompt, mask_video=masks, num_frames=job.num_frames, output_type="np", **options
            )
            frames = _to_uint8(out.frames[0])
        return GeneratedVideo(frames, masks)

    def _plans_layout(self, job: VideoJob) -> bool:
        return job.masks is None and job.reference is None and self.spec.text_only == TEXT_ONLY_LAYOUT

    def _planned_layout(self, job: VideoJob, on_stage: StageCallback) -> MaskSequence:
        """Masks planned from the prompt, for an engine that draws only where masks say (`shapes/layout.py`)."""
        from generation.mvideo.shapes.layout import plan_layout

        on_stage("planning layout")
        return plan_layout(
            job.prompt,
            width=job.width,
            height=job.height,
            num_frames=job.num_frames,
            fps=job.fps,
            seed=job.seed or 0,
            max_objects=self.spec.num_mask_slots,
        )

    def _reference_masks(self, job: VideoJob, on_stage: StageCallback) -> MaskSequence:
        """The reference video's masks at the job's size, length and object slots."""
        if self.load_mask_engine is None:
            raise FieldError("reference", "this server does not extract masks from reference videos")
        on_stage("extracting masks")
        if self._mask_engine is None:
            self._mask_engine = self.load_mask_engine()
        ref = job.reference
        assert ref is not None
        extraction = ExtractionJob(
            video=ref.video,
            query=ref.text_query,
            box_threshold=ref.box_threshold,
            text_threshold=ref.text_threshold,
        )
        seq = self._mask_engine.extract(extraction, lambda done, total, objects: on_stage("extracting masks"))
        if not seq.objects:
            raise FieldError("reference.text_query", f"found no {ref.text_query!r} in the reference video")
        return fit_masks(seq, job.width, job.height, job.num_frames, self.spec.num_mask_slots)


def layout_warnings(prompt: str, spec: EngineSpec) -> tuple[str, ...]:
    """A line naming the objects a planned layout leaves out: it draws one per noun phrase, up to the mask slots."""
    from generation.mvideo.pipelines.phrases import noun_phrases

    phrases = noun_phrases(prompt)
    if len(phrases) <= spec.num_mask_slots:
        return ()
    left_out = ", ".join(phrases[spec.num_mask_slots :])
    return (
        f"the prompt names {len(phrases)} objects; this model draws at most {spec.num_mask_slots}, so the "
        f"layout leaves out: {left_out}",
    )


# -- loading ----------------------------------------------------------------------------------------------------


def torch_dtype(name: str, device: str) -> Any:
    """The torch dtype of a `--dtype` name; auto: bfloat16 on CUDA (the published models' dtype), else float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"unknown dtype {name!r}; choose auto, bfloat16, float16 or float32")
    return getattr(torch, name)


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_mvideo_engine(
    *,
    path: str | Path | None,
    tiny: bool = False,
    device: str | None = None,
    dtype: str = "auto",
    torch_threads: int = 0,
    attention: str = "auto",
    load_mask_engine: Callable[[], MaskEngine] | None = None,
) -> PipelineEngine:
    """Load the MVideo engine once: tiny random components, or a pipeline folder (the shapes default)."""
    import torch

    from generation.mvideo.pipelines import MVideoPipeline, load_pipeline, set_attention_backend
    from generation.mvideo.pipelines.loading import sampling_call_defaults

    if torch_threads:
        torch.set_num_threads(torch_threads)
    device = _device(device)
    weights = torch_dtype(dtype, device)
    if tiny:
        from generation.mvideo.pipelines.testing import tiny_mvideo_components

        pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
        if weights != torch.float32:
            pipe = pipe.to(dtype=weights)
        max_height, max_width = renderable_size(dict(pipe.transformer.config), pipe.vae_scale_factor_spatial)
        spec = dataclasses.replace(TINY_SPEC, max_height=max_height, max_width=max_width)
    else:
        if path is None or not (Path(path) / "model_index.json").is_file():
            raise FileNotFoundError(
                f"no MVideo pipeline at {path}; pass --engine-path (e.g. the shapes-world default, reproduced by "
                "`kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default`) "
                "or --tiny-engine"
            )
        pipe = load_pipeline("mvideo", str(path), torch_dtype=weights)
        spec = spec_from_dir(path, fallback_sampling=sampling_call_defaults(pipe))
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    backend = set_attention_backend(pipe, attention)
    logger.info(
        "loaded %s (%s) on %s in %s, attention %s", spec.model_version, spec.name, device, weights, backend
    )
    return PipelineEngine(pipe, spec, load_mask_engine=load_mask_engine, attention=backend)


def load_vace_engine(
    path: str, *, device: str | None = None, dtype: str = "auto", attention: str = "auto"
) -> PipelineEngine:
    """Load Wan2.1-VACE behind MVideo's surface (bfloat16 on CUDA by default; its VAE stays float32)."""
    from generation.mvideo.pipelines import load_pipeline, set_attention_backend

    device = _device(device)
    pipe = load_pipeline("vace", path, torch_dtype=torch_dtype(dtype, device)).to(device)
    pipe.set_progress_bar_config(disable=True)
    spec = EngineSpec(
        name="vace",
        model_version=f"vace-{Path(path).name}",
        height=VACE_SAMPLING["height"],
        width=VACE_SAMPLING["width"],
        num_frames=VACE_SAMPLING["num_frames"],
        fps=VACE_SAMPLING["fps"],
        size_multiple=pipe.vae_scale_factor_spatial * pipe.patch_size_spatial,
        frame_step=pipe.vae_scale_factor_temporal,
        num_mask_slots=pipe.num_mask_slots,
        num_inference_steps=VACE_SAMPLING["num_inference_steps"],
        guidance_scale=inspect.signature(type(pipe).__call__).parameters["guidance_scale"].default,
    )
    backend = set_attention_backend(pipe, attention)
    return PipelineEngine(pipe, spec, attention=backend)
