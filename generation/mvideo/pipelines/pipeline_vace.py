"""Second engine: Wan2.1-VACE (diffusers' `WanVACEPipeline`) fed MVideo's mask sequences, with MVideo's call surface.

    pipe = MaskGuidedVACEPipeline.from_pretrained("Wan-AI/Wan2.1-VACE-1.3B-diffusers", dtype=torch.bfloat16)
    pipe(prompt="a dog runs", mask_video=mask_sequence, num_frames=81, mask_guidance_scale=1.0).frames

`MaskGuidedVACEPipeline` is a `WanVACEPipeline` (a diffusers `DiffusionPipeline` with the same modules) whose
`__call__` takes MVideo's arguments; it loads the published Wan VACE folders and saves as diffusers does.

VACE takes a control `video` and a per-frame `mask` (white = generate, black = keep the `video` pixels). How
mask sequences become those (our choices):

- **Masks as a layout control video, mask all white.** A mask sequence says where objects are, not what the
  pixels are, so nothing is kept: `mask` is all ones (generate everywhere) and `video` is a layout rendering,
  VACE's "layout" control: a mid-grey background (0 after VACE's [-1, 1] normalisation, VACE's "no
  information" value) with slot k's object filled with `SLOT_COLORS[k]` (slot 0 white; a single object is
  white-on-grey). With mask = 1 VACE encodes the rendering as its "reactive" stream and a zero "inactive" one.
- **`mask_guidance_scale` is VACE's `conditioning_scale`** (the weight of the control hints added in the VACE
  layers): 0 = no mask influence, 1 = as trained.
- **`mask_guidance_start` / `_end`** set `conditioning_scale` to 0 outside the window (a forward pre-hook on the
  transformer looks up the step of the current timestep), so the schedule means what it means in MVideo.
- **Batches** are generated one video at a time (WanVACEPipeline takes one control video per call) and stacked.
- **Previews** (`preview_every=k`): the current latents decoded at half resolution (Wan's scheduler exposes no
  clean-sample estimate to callbacks), (B, T, C, H', W') in [0, 1].

`WanVACEPipeline` needs `ftfy` at run time (diffusers does not declare it; it is in our dependencies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanVACEPipeline,
    WanVACETransformer3DModel,
)
from transformers import AutoTokenizer, UMT5EncoderModel

from generation.mvideo.pipelines.pipeline_mvideo import (
    MVideoPipelineOutput,
    check_guidance_inputs,
    mask_video_batch,
    mask_window_steps,
    to_unit_frames,
)

logger = logging.getLogger(__name__)

__all__ = ["SLOT_COLORS", "MaskGuidedVACEPipeline", "render_layout_video"]

SLOT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 128, 0),
)
BACKGROUND = (127, 127, 127)


def render_layout_video(slots: torch.Tensor) -> list[PIL.Image.Image]:
    """A slot mask video (T, K, H, W) as VACE layout frames: grey background, slot k filled with SLOT_COLORS[k]."""
    num_frames, num_slots, height, width = slots.shape
    if num_slots > len(SLOT_COLORS):
        raise ValueError(f"at most {len(SLOT_COLORS)} slots can be rendered, got {num_slots}")
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    binary = (slots > 0.5).numpy()
    for k in range(num_slots):  # later slots paint over earlier ones where masks overlap
        frames[binary[:, k]] = SLOT_COLORS[k]
    return [PIL.Image.fromarray(frame) for frame in frames]


class MaskGuidedVACEPipeline(WanVACEPipeline):
    """Wan2.1-VACE behind `MVideoPipeline`'s call surface (see the module docstring).

    A diffusers `WanVACEPipeline` (same registered modules, so `to`, `enable_model_cpu_offload`,
    `save_pretrained` / `from_pretrained`, `from_pipe` and `set_progress_bar_config` are diffusers' own) whose
    `__call__` takes MVideo's arguments and runs Wan's denoising once per video. The saved `model_index.json`
    records `num_mask_slots`.

    Args:
        tokenizer, text_encoder, vae, scheduler, transformer, transformer_2, boundary_ratio: as `WanVACEPipeline`.
        num_mask_slots: object slots a `MaskSequence` is split into (slot k = k-th object by ascending id).

    Sizes the pipeline takes (also on `MVideoPipeline`, under the same names):
        vae_scale_factor_spatial: pixels per latent cell along height and width (8 for Wan's VAE).
        vae_scale_factor_temporal: frames per latent frame after the first (4 for Wan's VAE); `num_frames` must
            be 1 + k * this.
        patch_size_spatial: latent cells per transformer patch along height and width; `height` and `width` must
            be multiples of `vae_scale_factor_spatial * patch_size_spatial`.
        num_mask_slots: see Args.
    """

    def __init__(
        self,
        tokenizer: AutoTokenizer,
        text_encoder: UMT5EncoderModel,
        vae: AutoencoderKLWan,
        scheduler: FlowMatchEulerDiscreteScheduler,
        transformer: WanVACETransformer3DModel = None,
        transformer_2: WanVACETransformer3DModel = None,
        boundary_ratio: float | None = None,
        num_mask_slots: int = 4,
    ):
        super().__init__(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            transformer_2=transformer_2,
            boundary_ratio=boundary_ratio,
        )
        if num_mask_slots < 1 or num_mask_slots > len(SLOT_COLORS):
            raise ValueError(f"num_mask_slots must be in [1, {len(SLOT_COLORS)}], got {num_mask_slots}")
        self.register_to_config(num_mask_slots=num_mask_slots)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> MaskGuidedVACEPipeline:
        """diffusers' loading of a Wan VACE folder or hub id (ours or a plain `WanVACEPipeline`'s); the VAE is
        loaded in float32 unless one is given (Wan's recommendation), whatever `dtype` the rest takes.
        `num_mask_slots=` overrides the saved value (default 4 for a plain Wan folder)."""
        if "vae" not in kwargs:
            kwargs["vae"] = AutoencoderKLWan.from_pretrained(
                pretrained_model_name_or_path, subfolder="vae", dtype=torch.float32
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def num_mask_slots(self) -> int:
        """Object slots a `MaskSequence` is split into (from the config)."""
        return self.config.num_mask_slots

    @property
    def patch_size_spatial(self) -> int:
        """Latent cells per transformer patch along height and width (`transformer.config.patch_size[1]`)."""
        transformer = self.transformer if self.transformer is not None else self.transformer_2
        return int(transformer.config.patch_size[1])

    def enable_vae_tiling(self) -> None:
        """Decode in overlapping spatial tiles (Wan's VAE)."""
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        self.vae.disable_tiling()

    def enable_vae_slicing(self) -> None:
        """Decode the batch one video at a time (Wan's VAE)."""
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        self.vae.disable_slicing()

    def check_mvideo_inputs(
        self,
        prompts: list[str],
        masks: list[torch.Tensor] | None,
        height: int,
        width: int,
        num_frames: int,
        guidance_scale: float,
        mask_guidance_scale: float,
        mask_guidance_start: float,
        mask_guidance_end: float,
        output_type: str,
        preview_every: int | None,
        callback_on_step_end: Callable | None,
    ) -> None:
        """ValueError naming the first bad argument of `__call__` (WanVACEPipeline's own `check_inputs` checks
        what is passed on to it)."""
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("`prompt` must be a non-empty string or list of non-empty strings")
        temporal = self.vae_scale_factor_temporal
        if num_frames < 1 or (num_frames - 1) % temporal:
            raise ValueError(f"`num_frames` must be 1 + k * {temporal}, got {num_frames}")
        multiple = self.vae_scale_factor_spatial * self.patch_size_spatial
        if height % multiple or width % multiple:
            raise ValueError(f"`height` and `width` must be multiples of {multiple}, got {height}x{width}")
        if masks is not None:
            if len(masks) not in (1, len(prompts)):
                raise ValueError(
                    f"`mask_video` has batch {len(masks)}, expected 1 or {len(prompts)} (prompts)"
                )
            for mask in masks:
                if mask.shape[0] != num_frames:
                    raise ValueError(f"`mask_video` has {mask.shape[0]} frames but num_frames={num_frames}")
                if tuple(mask.shape[2:]) != (height, width):
                    raise ValueError(
                        f"`mask_video` is {mask.shape[2]}x{mask.shape[3]} (HxW) but height x width = {height}x{width}"
                    )
        check_guidance_inputs(
            guidance_scale, mask_guidance_scale, mask_guidance_start, mask_guidance_end, output_type
        )
        if preview_every is not None and (preview_every < 1 or callback_on_step_end is None):
            raise ValueError("`preview_every` must be >= 1 and needs a `callback_on_step_end`")

    def decode_preview(self, latents: torch.Tensor) -> torch.Tensor:
        """Wan latents (B, C, F, h, w) -> half-resolution frames (B, T, C, H', W') in [0, 1]."""
        vae = self.vae
        b, c, f, h, w = latents.shape
        if h % 2 == 0 and w % 2 == 0 and h > 2 and w > 2:
            latents = F.avg_pool3d(latents.float(), kernel_size=(1, 2, 2))
        mean = torch.tensor(vae.config.latents_mean).view(1, c, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, c, 1, 1, 1).to(latents)
        video = vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0]
        return to_unit_frames(video).cpu()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        mask_video: Any = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        mask_guidance_scale: float = 1.0,
        mask_guidance_start: float = 0.0,
        mask_guidance_end: float = 1.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        preview_every: int | None = None,
        max_sequence_length: int = 512,
    ) -> MVideoPipelineOutput | tuple:
        """Same arguments as `MVideoPipeline.__call__` (mask_guidance_scale -> VACE's conditioning_scale)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        negatives = (
            [negative_prompt] * len(prompts) if not isinstance(negative_prompt, list) else negative_prompt
        )
        # one (T, K, H, W) slot video per batch item
        masks = None if mask_video is None else list(mask_video_batch(mask_video, self.num_mask_slots))
        if masks:
            num_frames = num_frames or masks[0].shape[0]
            height = height or masks[0].shape[2]
            width = width or masks[0].shape[3]
        height, width, num_frames = height or 480, width or 832, num_frames or 81
        self.check_mvideo_inputs(
            prompts,
            masks,
            height,
            width,
            num_frames,
            guidance_scale,
            mask_guidance_scale,
            mask_guidance_start,
            mask_guidance_end,
            output_type,
            preview_every,
            callback_on_step_end,
        )
        if masks is not None and len(masks) == 1:
            masks = masks * len(prompts)

        videos: list[Any] = []
        for index in range(len(prompts) * num_videos_per_prompt):
            item = index // num_videos_per_prompt
            videos.append(
                self._generate_one(
                    prompts[item],
                    negatives[item] if negatives else None,
                    None if masks is None else masks[item],
                    height,
                    width,
                    num_frames,
                    num_inference_steps,
                    guidance_scale,
                    mask_guidance_scale,
                    mask_guidance_start,
                    mask_guidance_end,
                    generator,
                    None if latents is None else latents[index : index + 1],
                    output_type,
                    callback_on_step_end,
                    list(callback_on_step_end_tensor_inputs),
                    preview_every,
                    max_sequence_length,
                )
            )
        frames: Any
        if output_type == "pil":
            frames = [video[0] for video in videos]
        elif output_type == "np":
            frames = np.concatenate(videos)
        else:
            frames = torch.cat(videos)
        if not return_dict:
            return (frames,)
        return MVideoPipelineOutput(frames=frames)

    def _generate_one(
        self,
        prompt,
        negative_prompt,
        slots,
        height,
        width,
        num_frames,
        num_inference_steps,
        guidance_scale,
        mask_guidance_scale,
        mask_guidance_start,
        mask_guidance_end,
        generator,
        latents,
        output_type,
        callback_on_step_end,
        tensor_inputs,
        preview_every,
        max_sequence_length,
    ) -> Any:
        if slots is None:
            # no mask: a grey control video and conditioning 0, i.e. plain Wan text-to-video
            video = [PIL.Image.new("RGB", (width, height), BACKGROUND)] * num_frames
            mask_guidance_scale = 0.0
        else:
            video = render_layout_video(slots)
        mask = [PIL.Image.new("L", (width, height), 255)] * num_frames
        window = mask_window_steps(num_inference_steps, mask_guidance_start, mask_guidance_end)

        def schedule_hook(module, args, kwargs):
            timesteps = self.scheduler.timesteps
            step = (
                int((timesteps == self.current_timestep).nonzero()[0, 0])
                if self.current_timestep is not None
                else 0
            )
            if not window[min(step, len(window) - 1)]:
                kwargs["control_hidden_states_scale"] = torch.zeros_like(
                    kwargs["control_hidden_states_scale"]
                )
            return args, kwargs

        def callback(p, step, timestep, callback_kwargs):
            if preview_every is not None and (step + 1) % preview_every == 0:
                callback_kwargs["preview"] = self.decode_preview(callback_kwargs["latents"])
            if "latents" not in tensor_inputs:
                callback_kwargs.pop("latents", None)
            return callback_on_step_end(p, step, timestep, callback_kwargs) or {}

        handles = [
            transformer.register_forward_pre_hook(schedule_hook, with_kwargs=True, prepend=True)
            for transformer in (self.transformer, self.transformer_2)
            if transformer is not None
        ]
        try:
            return (
                super()
                .__call__(
                    prompt=prompt,
                    negative_prompt=negative_prompt,
                    video=video,
                    mask=mask,
                    conditioning_scale=float(mask_guidance_scale),
                    height=height,
                    width=width,
                    num_frames=num_frames,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    generator=generator,
                    latents=latents,
                    output_type=output_type,
                    callback_on_step_end=None if callback_on_step_end is None else callback,
                    callback_on_step_end_tensor_inputs=sorted(set(tensor_inputs) | {"latents"}),
                    max_sequence_length=max_sequence_length,
                )
                .frames
            )
        finally:
            for handle in handles:
                handle.remove()
