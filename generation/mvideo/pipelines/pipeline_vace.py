"""Second engine: Wan2.1-VACE (diffusers' `WanVACEPipeline`) fed MVideo's mask sequences, with MVideo's call surface.

    pipe = MaskGuidedVACEPipeline.from_pretrained("Wan-AI/Wan2.1-VACE-1.3B-diffusers", torch_dtype=torch.bfloat16)
    pipe(prompt="a dog runs", mask_video=mask_sequence, num_frames=81, mask_guidance_scale=1.0).frames

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


class MaskGuidedVACEPipeline:
    """Wan2.1-VACE behind `MVideoPipeline`'s call surface (see the module docstring).

    Args:
        pipe: a `diffusers.WanVACEPipeline`.
        num_mask_slots: object slots a `MaskSequence` is split into (slot k = k-th object by ascending id).
    """

    def __init__(self, pipe: Any, num_mask_slots: int = 4):
        self.pipe = pipe
        self.num_mask_slots = num_mask_slots

    @classmethod
    def from_pretrained(
        cls, path_or_id: str, torch_dtype: torch.dtype | None = None, num_mask_slots: int = 4, **kwargs: Any
    ) -> MaskGuidedVACEPipeline:
        """Load a diffusers-format Wan VACE checkpoint; the VAE stays float32 (Wan's recommendation)."""
        from diffusers import AutoencoderKLWan, WanVACEPipeline

        if "vae" not in kwargs:
            kwargs["vae"] = AutoencoderKLWan.from_pretrained(path_or_id, subfolder="vae", dtype=torch.float32)
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype  # diffusers 0.42 renamed torch_dtype to dtype
        pipe = WanVACEPipeline.from_pretrained(path_or_id, **kwargs)
        return cls(pipe, num_mask_slots=num_mask_slots)

    # pass-throughs users expect from a pipeline
    def to(self, *args: Any, **kwargs: Any) -> MaskGuidedVACEPipeline:
        self.pipe.to(*args, **kwargs)
        return self

    def enable_model_cpu_offload(self, *args: Any, **kwargs: Any) -> None:
        self.pipe.enable_model_cpu_offload(*args, **kwargs)

    def enable_vae_tiling(self) -> None:
        self.pipe.vae.enable_tiling()

    def enable_vae_slicing(self) -> None:
        self.pipe.vae.enable_slicing()

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        self.pipe.set_progress_bar_config(**kwargs)

    @property
    def components(self) -> dict[str, Any]:
        return self.pipe.components

    def check_inputs(
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
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("`prompt` must be a non-empty string or list of non-empty strings")
        temporal = self.pipe.vae_scale_factor_temporal
        if num_frames < 1 or (num_frames - 1) % temporal:
            raise ValueError(f"`num_frames` must be 1 + k * {temporal}, got {num_frames}")
        multiple = self.pipe.vae_scale_factor_spatial * self.pipe.transformer.config.patch_size[1]
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
        vae = self.pipe.vae
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
        self.check_inputs(
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
        pipe = self.pipe
        if slots is None:
            # no mask: a grey control video and conditioning 0, i.e. plain Wan text-to-video
            video = [PIL.Image.new("RGB", (width, height), BACKGROUND)] * num_frames
            mask_guidance_scale = 0.0
        else:
            video = render_layout_video(slots)
        mask = [PIL.Image.new("L", (width, height), 255)] * num_frames
        window = mask_window_steps(num_inference_steps, mask_guidance_start, mask_guidance_end)

        def schedule_hook(module, args, kwargs):
            timesteps = pipe.scheduler.timesteps
            step = (
                int((timesteps == pipe.current_timestep).nonzero()[0, 0])
                if pipe.current_timestep is not None
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

        handle = pipe.transformer.register_forward_pre_hook(schedule_hook, with_kwargs=True, prepend=True)
        try:
            return pipe(
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
            ).frames
        finally:
            handle.remove()
