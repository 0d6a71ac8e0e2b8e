"""`MVideoPipeline`: text-to-video with a mask sequence fixing where and how objects move (MVideo, arXiv 2411.08328).

Components: `tokenizer` + `text_encoder` (T5, as CogVideoX), `vae` (any diffusers-style video autoencoder:
`encode(x).latent_dist`, `decode(z).sample`, `config.scaling_factor`, `config.temporal_compression_ratio`;
CogVideoX's VAE or the shapes world's pixel-space one), `transformer` (`MVideoTransformer3DModel`),
`mask_encoder` (`MaskEncoder`) and a scheduler (`CogVideoXDDIMScheduler`, `CogVideoXDPMScheduler` or any
scheduler with diffusers' `step`).

Our choices (the paper leaves them open):

- **Two guidance scales.** With e_u = eps(x, negative prompt, no mask), e_t = eps(x, prompt, no mask) and
  e_tm = eps(x, prompt, mask), the prediction is

      eps = e_u + s_text (e_t - e_u) + s_mask (e_tm - e_t)

  (InstructPix2Pix-style, text first). `mask_guidance_scale=0` is exactly the no-mask output (the mask branch
  is not run), `1` adds the mask condition once, `> 1` pushes harder towards the masks. Text guidance is off
  for `guidance_scale <= 1` (as in diffusers; then s_text = 1 and e_u cancels). Branches whose weight is zero
  are skipped, so the transformer batch is 3x when both guidances are on, 2x when one is off (text off, or no
  mask / `mask_guidance_scale=0` / a step outside the mask window), 1x with text off and `mask_guidance_scale=1`.
- **Mask schedule.** The mask condition is applied at step i of N iff `mask_guidance_start * N <= i <
  mask_guidance_end * N`; outside the window the mask branch is dropped (not zeroed into the other branches).
  Early steps fix layout and motion, so ending the window early frees the late, detail steps from the masks.
- **Previews.** With `preview_every=k` the callback gets, every k-th step, `callback_kwargs["preview"]`: the
  scheduler's current clean-sample estimate decoded at half resolution (latents area-downsampled by
  `preview_downsample`), float (B, T, C, H', W') in [0, 1] on the CPU.
- **Continuation inputs (for long videos).** `anchor_latents` (B, Fa, C, h, w) pin the first Fa latent frames:
  after every step they are replaced by the anchor noised to the next step's level, and set to the anchor
  exactly at the end (inpainting-style replacement, training-free). `init_latents` + `strength < 1` start
  denoising from the noised `init_latents` and run only the last `strength` fraction of the steps
  (SDEdit / CogVideoX video-to-video).
- **Mask slots.** A `MaskSequence` becomes a K-slot mask video, slot k = the k-th object by ascending id
  (`mask_sequence_to_slots`). A mask batch of 1 is shared by all prompts; else it must match the prompts.
- **Binding objects to words.** The model reads slot k as the object of the prompt's k-th noun phrase, so the
  slots are reordered by `generation.mvideo.pipelines.phrases`: each object whose label (a `MaskSequence`'s
  `MaskObject.label`, or `mask_labels` for tensors) matches a phrase moves to that phrase's slot; objects without
  a matching label fill the free slots in order.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from generation.mvideo.models.mask_encoder import MaskEncoder, mask_sequence_to_slots
from generation.mvideo.models.transformer_mvideo import MVideoTransformer3DModel
from generation.mvideo.pipelines.phrases import bind_slots

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class MVideoPipelineOutput(BaseOutput):
    """Output of `MVideoPipeline`.

    Args:
        frames: `output_type="pil"`: a list (batch) of lists of PIL images; `"np"`: array (B, T, H, W, C) in
            [0, 1]; `"pt"`: tensor (B, T, C, H, W) in [0, 1]; `"latent"`: latents (B, F, C, h, w).
    """

    frames: Any


def vae_compression(vae: Any) -> tuple[int, int]:
    """(spatial, temporal) compression of a diffusers-style video VAE, read from its config.

    spatial: `config.spatial_compression_ratio` if present, else 2 ** (len(block_out_channels) - 1) as for
    CogVideoX's VAE, else 1; temporal: `config.temporal_compression_ratio`, else 1.
    """
    config = vae.config
    spatial = getattr(config, "spatial_compression_ratio", None)
    if spatial is None:
        blocks = getattr(config, "block_out_channels", None)
        spatial = 2 ** (len(blocks) - 1) if blocks else 1
    temporal = getattr(config, "temporal_compression_ratio", None) or 1
    return int(spatial), int(temporal)


def guidance_weights(text_guidance: float | None, mask_guidance: float | None) -> dict[str, float]:
    """Weights of the branches "uncond", "text", "text_mask" in eps = sum(w * e); zero weights are left out.

    `text_guidance=None` means text CFG off (s_text = 1), `mask_guidance=None` means no mask at this step
    (s_mask = 0). The weights are those of eps = e_u + s_text (e_t - e_u) + s_mask (e_tm - e_t); they sum to 1.
    """
    s_text = 1.0 if text_guidance is None else float(text_guidance)
    s_mask = 0.0 if mask_guidance is None else float(mask_guidance)
    weights = {"uncond": 1.0 - s_text, "text": s_text - s_mask, "text_mask": s_mask}
    return {name: w for name, w in weights.items() if w != 0.0}


def mask_window_steps(num_steps: int, start: float, end: float) -> list[bool]:
    """Whether the mask condition is applied at each of `num_steps` steps: start * N <= i < end * N."""
    return [start * num_steps <= i < end * num_steps for i in range(num_steps)]


def import_own_components(path: Any) -> None:
    """Import the `generation.` modules a local pipeline folder's model_index.json names (see `from_pretrained`)."""
    index = Path(str(path)) / "model_index.json"
    if not index.is_file():
        return  # a hub id: its components are diffusers/transformers classes
    for value in json.loads(index.read_text()).values():
        if (
            isinstance(value, list)
            and value
            and isinstance(value[0], str)
            and value[0].startswith("generation.")
        ):
            importlib.import_module(value[0])


def denoising_steps(num_inference_steps: int, strength: float = 1.0) -> int:
    """Steps a call runs: all of them, or the last `strength` fraction when starting from `init_latents`."""
    if strength >= 1.0:
        return num_inference_steps
    return max(1, min(round(num_inference_steps * strength), num_inference_steps))


def rotary_embeddings(
    transformer_config: Any, latent_frames: int, latent_height: int, latent_width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CogVideoX's 3D rotary embeddings for latents (F, h, w) of a transformer with this config, as diffusers'
    `CogVideoXPipeline` makes them (None when the model uses none). Shared by the pipeline and the trainer."""
    config = transformer_config
    if not config.use_rotary_positional_embeddings:
        return None
    p, p_t = config.patch_size, config.patch_size_t
    grid_h, grid_w = latent_height // p, latent_width // p
    base_w, base_h = config.sample_width // p, config.sample_height // p
    if p_t is None:  # CogVideoX 1.0
        crops = get_resize_crop_region_for_grid((grid_h, grid_w), base_w, base_h)
        return get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=crops,
            grid_size=(grid_h, grid_w),
            temporal_size=latent_frames,
            device=device,
        )
    return get_3d_rotary_pos_embed(  # CogVideoX 1.5
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=(grid_h, grid_w),
        temporal_size=(latent_frames + p_t - 1) // p_t,
        grid_type="slice",
        max_size=(base_h, base_w),
        device=device,
    )


def check_guidance_inputs(
    guidance_scale: float,
    mask_guidance_scale: float,
    mask_guidance_start: float,
    mask_guidance_end: float,
    output_type: str,
) -> None:
    """The checks both engines (MVideo, VACE) make on the guidance scales, mask window and output type."""
    if guidance_scale < 0:
        raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale}")
    if mask_guidance_scale < 0:
        raise ValueError(f"`mask_guidance_scale` must be >= 0, got {mask_guidance_scale}")
    if not 0.0 <= mask_guidance_start <= mask_guidance_end <= 1.0:
        raise ValueError(
            "`mask_guidance_start` and `mask_guidance_end` must satisfy 0 <= start <= end <= 1, "
            f"got start={mask_guidance_start}, end={mask_guidance_end}"
        )
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")


def to_unit_frames(video: torch.Tensor) -> torch.Tensor:
    """VAE output (B, C, T, H, W) in [-1, 1] -> frames (B, T, C, H, W) float32 in [0, 1]."""
    return ((video.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4)


def _is_mask_sequence(value: Any) -> bool:
    return hasattr(value, "id_map") and hasattr(value, "object_ids") and hasattr(value, "num_frames")


def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))


def mask_video_batch(
    mask_video: Any,
    num_slots: int,
    start: int = 0,
    stop: int | None = None,
    *,
    prompt: str | list[str] | None = None,
    mask_labels: list | None = None,
) -> torch.Tensor:
    """The one normalisation of a mask input (MVideo, VACE and long videos): `mask_video` (MaskSequence, list of
    them, tensor/array (B, T, K, H, W) or (T, K, H, W), list of tensors/arrays (T, K, H, W)) as a float tensor
    (B, T', K, H, W) of its frames [start, stop) (default: all). A MaskSequence becomes `num_slots` slots
    (`mask_sequence_to_slots`) and only the asked frames are decoded, so a long one can be read clip by clip.

    With `prompt`, the slots are bound to the prompt's phrases (`generation.mvideo.pipelines.phrases.bind_slots`) by the
    labels of the objects: `mask_labels` (one list of per-slot labels or None per mask item; one flat list is
    taken for a single item), else a MaskSequence's own `MaskObject.label`s."""
    labels = _mask_labels(mask_video, mask_labels)
    masks = _mask_video_batch(mask_video, num_slots, start, stop)
    if prompt is None or labels is None:
        return masks
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    return bind_slots(masks, prompts, labels)


def _mask_labels(mask_video: Any, mask_labels: list | None) -> list[list[str | None]] | None:
    """Per mask item, the label of each slot (None where unknown); None when no label is known at all."""
    if mask_labels is not None:
        if mask_labels and all(label is None or isinstance(label, str) for label in mask_labels):
            return [list(mask_labels)]
        return [list(item) for item in mask_labels]
    items = mask_video if isinstance(mask_video, list | tuple) else [mask_video]
    if not any(_is_mask_sequence(item) for item in items):
        return None
    return [[o.label or None for o in item.objects] if _is_mask_sequence(item) else [] for item in items]


def _mask_video_batch(mask_video: Any, num_slots: int, start: int, stop: int | None) -> torch.Tensor:
    if _is_mask_sequence(mask_video):
        return mask_sequence_to_slots(mask_video, num_slots, start=start, stop=stop)[None]
    if isinstance(mask_video, list | tuple):
        if not mask_video:
            raise ValueError("mask_video is an empty list")
        items = [
            mask_sequence_to_slots(m, num_slots) if _is_mask_sequence(m) else _as_tensor(m)
            for m in mask_video
        ]
        shapes = {tuple(item.shape) for item in items}
        if len(shapes) != 1 or items[0].ndim != 4:
            raise ValueError(
                f"mask_video list items must all be (T, K, H, W) of one shape, got {sorted(shapes)}"
            )
        mask_video = torch.stack(items)
    elif isinstance(mask_video, torch.Tensor | np.ndarray):
        mask_video = _as_tensor(mask_video)
        if mask_video.ndim == 4:
            mask_video = mask_video[None]
        if mask_video.ndim != 5:
            raise ValueError(
                f"mask_video must be (B, T, K, H, W) or (T, K, H, W), got shape {tuple(mask_video.shape)}"
            )
    else:
        raise ValueError(
            "mask_video must be a MaskSequence, a tensor/array (B, T, K, H, W) or (T, K, H, W), or a list, "
            f"got {type(mask_video).__name__}"
        )
    stop = mask_video.shape[1] if stop is None else stop
    if not 0 <= start <= stop <= mask_video.shape[1]:
        raise ValueError(
            f"frame range [{start}, {stop}) is outside the mask video's {mask_video.shape[1]} frames"
        )
    return mask_video[:, start:stop].float()


def _retrieve_latents(encoder_output: Any) -> torch.Tensor:
    if hasattr(encoder_output, "latent_dist"):
        return encoder_output.latent_dist.mode()
    if hasattr(encoder_output, "latents"):
        return encoder_output.latents
    raise ValueError("the VAE's encode() returned neither `latent_dist` nor `latents`")


class MVideoPipeline(DiffusionPipeline):
    """Mask-sequence-conditioned text-to-video generation (MVideo on CogVideoX).

    Args:
        tokenizer: T5 tokenizer.
        text_encoder: `T5EncoderModel`.
        vae: diffusers-style video autoencoder (e.g. `AutoencoderKLCogVideoX`).
        transformer: `MVideoTransformer3DModel`.
        mask_encoder: `MaskEncoder` whose compression factors match the VAE's.
        scheduler: `CogVideoXDDIMScheduler` / `CogVideoXDPMScheduler` or another diffusers scheduler.

    Sizes the pipeline takes (also on `MaskGuidedVACEPipeline`, under the same names):
        vae_scale_factor_spatial: pixels per latent cell along height and width (`vae_compression`).
        vae_scale_factor_temporal: frames per latent frame after the first; `num_frames` must be 1 + k * this.
        patch_size_spatial: latent cells per transformer patch along height and width; `height` and `width` must
            be multiples of `vae_scale_factor_spatial * patch_size_spatial`.
        num_mask_slots: object slots of the mask encoder (K of a mask video (B, T, K, H, W)).
    """

    model_cpu_offload_seq = "text_encoder->mask_encoder->transformer->vae"
    _optional_components: list[str] = []
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "mask_latents"]
    preview_downsample = 2

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: Any,
        transformer: MVideoTransformer3DModel,
        mask_encoder: MaskEncoder,
        scheduler: Any,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            mask_encoder=mask_encoder,
            scheduler=scheduler,
        )
        if getattr(self, "vae", None) is not None:
            self.vae_scale_factor_spatial, self.vae_scale_factor_temporal = vae_compression(self.vae)
            self.vae_scaling_factor_image = float(getattr(self.vae.config, "scaling_factor", None) or 1.0)
            self.vae_shift_factor = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        else:
            self.vae_scale_factor_spatial, self.vae_scale_factor_temporal = 8, 4
            self.vae_scaling_factor_image, self.vae_shift_factor = 1.0, 0.0
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> MVideoPipeline:
        """diffusers' loading, after importing the modules of this repository that a local folder's
        model_index.json names (e.g. the shapes world's pixel-space autoencoder): diffusers loads classes only
        from modules already imported. Only `generation.` modules are imported, never others."""
        import_own_components(pretrained_model_name_or_path)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ memory and attention options

    def enable_vae_slicing(self) -> None:
        """Decode the batch one video at a time (passed to the VAE; a warning if it cannot)."""
        self._vae_option("enable_slicing")

    def disable_vae_slicing(self) -> None:
        self._vae_option("disable_slicing")

    def enable_vae_tiling(self) -> None:
        """Decode in overlapping spatial tiles (passed to the VAE; a warning if it cannot)."""
        self._vae_option("enable_tiling")

    def disable_vae_tiling(self) -> None:
        self._vae_option("disable_tiling")

    def _vae_option(self, method: str) -> None:
        if hasattr(self.vae, method):
            getattr(self.vae, method)()
        else:
            logger.warning("%s does not support %s; ignored", type(self.vae).__name__, method)

    def enable_xformers_memory_efficient_attention(self, attention_op: Callable | None = None) -> None:
        """Use xFormers in the transformer's attention (CogVideoX maths kept); needs xformers and CUDA. Without
        `attention_op` this is `set_attention_backend(pipe, "xformers")` (generation/mvideo/pipelines/loading.py)."""
        from generation.mvideo.pipelines.loading import xformers_unavailable_reason

        reason = xformers_unavailable_reason(self)
        if reason:
            raise ValueError(
                f"xformers attention is unavailable: {reason} (pip install 'kmono[gpu]'; pipe.to('cuda'))"
            )
        self.transformer.set_use_memory_efficient_attention_xformers(True, attention_op)

    def disable_xformers_memory_efficient_attention(self) -> None:
        self.transformer.set_use_memory_efficient_attention_xformers(False)

    # ------------------------------------------------------------------ text

    def _get_t5_prompt_embeds(
        self, prompt: list[str], num_videos_per_prompt: int, max_sequence_length: int, device, dtype
    ) -> torch.Tensor:
        text_inputs = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        prompt_embeds = self.text_encoder(text_inputs.input_ids.to(device))[0]
        prompt_embeds = prompt_embeds.to(dtype=dtype, device=device)
        return prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)  # (B * n, L, D)

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        max_sequence_length: int = 226,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """T5 embeddings of the prompt(s) and, with CFG, of the negative prompt(s) (default ""), each repeated
        `num_videos_per_prompt` times; given embeddings (one row per prompt) are repeated the same way."""
        device = device or self._execution_device
        dtype = dtype or self.text_encoder.dtype
        prompt = [prompt] if isinstance(prompt, str) else prompt
        batch_size = len(prompt) if prompt is not None else prompt_embeds.shape[0]
        if prompt_embeds is None:
            prompt_embeds = self._get_t5_prompt_embeds(
                prompt, num_videos_per_prompt, max_sequence_length, device, dtype
            )
        else:
            prompt_embeds = prompt_embeds.to(device).repeat_interleave(num_videos_per_prompt, dim=0)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.to(device).repeat_interleave(
                num_videos_per_prompt, dim=0
            )
        elif do_classifier_free_guidance:
            negative_prompt = negative_prompt or ""
            negative_prompt = (
                [negative_prompt] * batch_size if isinstance(negative_prompt, str) else negative_prompt
            )
            if len(negative_prompt) != batch_size:
                raise ValueError(
                    f"negative_prompt has {len(negative_prompt)} entries but prompt has {batch_size}"
                )
            negative_prompt_embeds = self._get_t5_prompt_embeds(
                negative_prompt, num_videos_per_prompt, max_sequence_length, device, dtype
            )
        return prompt_embeds, negative_prompt_embeds

    # ------------------------------------------------------------------ masks

    def prepare_mask_video(
        self, mask_video: Any, prompt: str | list[str] | None = None, mask_labels: list | None = None
    ) -> torch.Tensor | None:
        """`mask_video` as a float tensor (B, T, K, H, W), its slots bound to the prompt's phrases by their labels
        (`mask_video_batch`); None stays None. Shapes are checked by `check_inputs`."""
        if mask_video is None:
            return None
        return mask_video_batch(mask_video, self.num_mask_slots, prompt=prompt, mask_labels=mask_labels)

    def encode_mask_video(self, mask_video: torch.Tensor, device, dtype) -> torch.Tensor:
        """(B, T, K, H, W) -> mask latents (B, F, mask_in_channels, h, w)."""
        param = next(self.mask_encoder.parameters())
        mask_latents = self.mask_encoder(mask_video.to(device=param.device, dtype=param.dtype))
        return mask_latents.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ checks

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        height,
        width,
        num_frames,
        mask_video,
        guidance_scale,
        mask_guidance_scale,
        mask_guidance_start,
        mask_guidance_end,
        num_inference_steps,
        num_videos_per_prompt,
        output_type,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs,
        preview_every,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        strength=1.0,
        init_latents=None,
        anchor_latents=None,
    ) -> None:
        """ValueError naming the first bad argument."""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("pass either `prompt` or `prompt_embeds`, not both")
        if prompt is None and prompt_embeds is None:
            raise ValueError("`prompt` is required (or `prompt_embeds`)")
        if prompt is not None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise ValueError(f"`prompt` must be a non-empty str or list of str, got {prompt!r}")
            if any(not p.strip() for p in prompts):
                raise ValueError("`prompt` must not be empty or whitespace")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass either `negative_prompt` or `negative_prompt_embeds`, not both")
        if negative_prompt is not None and not isinstance(negative_prompt, str | list):
            raise ValueError(
                f"`negative_prompt` must be a str or list of str, got {type(negative_prompt).__name__}"
            )

        multiple = self.vae_scale_factor_spatial * self.patch_size_spatial
        if height <= 0 or width <= 0 or height % multiple or width % multiple:
            raise ValueError(
                f"`height` and `width` must be positive multiples of {multiple} (VAE x patch size), "
                f"got height={height}, width={width}"
            )
        t = self.vae_scale_factor_temporal
        if num_frames < 1 or (num_frames - 1) % t:
            raise ValueError(f"`num_frames` must be 1 + k * {t} for this VAE, got {num_frames}")
        encoder = self.mask_encoder.config
        if (encoder.spatial_compression_ratio, encoder.temporal_compression_ratio) != (
            self.vae_scale_factor_spatial,
            self.vae_scale_factor_temporal,
        ):
            raise ValueError(
                f"mask_encoder compresses ({encoder.spatial_compression_ratio}, "
                f"{encoder.temporal_compression_ratio}) but the VAE ({self.vae_scale_factor_spatial}, "
                f"{self.vae_scale_factor_temporal}) (spatial, temporal)"
            )
        if encoder.mask_in_channels != self.transformer.config.mask_in_channels:
            raise ValueError(
                f"mask_encoder outputs {encoder.mask_in_channels} channels, the transformer takes "
                f"{self.transformer.config.mask_in_channels} (mask_in_channels)"
            )
        if mask_video is not None:
            _, frames, slots, mask_height, mask_width = mask_video.shape
            if frames != num_frames:
                raise ValueError(f"`mask_video` has {frames} frames but num_frames={num_frames}")
            if (mask_height, mask_width) != (height, width):
                raise ValueError(
                    f"`mask_video` is {mask_height}x{mask_width} (HxW) but height x width = {height}x{width}"
                )
            if slots != encoder.num_mask_slots:
                raise ValueError(
                    f"`mask_video` has {slots} object slots, the mask encoder takes {encoder.num_mask_slots}"
                )
            if mask_video.numel() and (mask_video.min() < 0 or mask_video.max() > 1):
                raise ValueError("`mask_video` values must be in [0, 1]")

        check_guidance_inputs(
            guidance_scale, mask_guidance_scale, mask_guidance_start, mask_guidance_end, output_type
        )
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if num_videos_per_prompt < 1:
            raise ValueError(f"`num_videos_per_prompt` must be >= 1, got {num_videos_per_prompt}")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}, got {unknown}"
                )
        if preview_every is not None:
            if preview_every < 1:
                raise ValueError(f"`preview_every` must be >= 1, got {preview_every}")
            if callback_on_step_end is None:
                raise ValueError("`preview_every` needs a `callback_on_step_end` to receive the previews")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}")
        if strength < 1.0 and init_latents is None:
            raise ValueError("`strength` < 1 needs `init_latents`")
        for name, value in (("init_latents", init_latents), ("anchor_latents", anchor_latents)):
            if value is not None and value.ndim != 5:
                raise ValueError(f"`{name}` must be (B, F, C, h, w), got shape {tuple(value.shape)}")

    # ------------------------------------------------------------------ latents and VAE

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        return (
            batch_size,
            (num_frames - 1) // self.vae_scale_factor_temporal + 1,
            self.transformer.config.in_channels,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels (B, T, C, H, W) in [0, 1] -> scaled latents (B, F, C, h, w) (the VAE's mode, deterministic)."""
        param = next(self.vae.parameters())
        x = (
            (video * 2 - 1).permute(0, 2, 1, 3, 4).to(device=param.device, dtype=param.dtype)
        )  # (B, C, T, H, W)
        latents = _retrieve_latents(self.vae.encode(x))
        latents = (latents - self.vae_shift_factor) * self.vae_scaling_factor_image
        return latents.permute(0, 2, 1, 3, 4)  # (B, F, C, h, w)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, F, C, h, w) -> pixels (B, C, T, H, W) in [-1, 1] (as the VAE returns them)."""
        param = next(self.vae.parameters())
        latents = latents.permute(0, 2, 1, 3, 4) / self.vae_scaling_factor_image + self.vae_shift_factor
        return self.vae.decode(latents.to(device=param.device, dtype=param.dtype)).sample

    def decode_preview(self, latents: torch.Tensor) -> torch.Tensor:
        """Low-res preview of latents: area-downsampled by `preview_downsample`, decoded, (B, T, C, H', W') in [0, 1]."""
        b, f, c, h, w = latents.shape
        factor = self.preview_downsample
        if h % factor == 0 and w % factor == 0 and h > factor and w > factor:
            latents = F.avg_pool2d(latents.reshape(b * f, c, h, w), factor).reshape(
                b, f, c, h // factor, w // factor
            )
        return to_unit_frames(self.decode_latents(latents)).cpu()

    def _extra_step_kwargs(self, generator, eta: float) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    # ------------------------------------------------------------------ properties

    @property
    def patch_size_spatial(self) -> int:
        """Latent cells per transformer patch along height and width (`transformer.config.patch_size`)."""
        return int(self.transformer.config.patch_size)

    @property
    def num_mask_slots(self) -> int:
        """Object slots of the mask encoder (`mask_encoder.config.num_mask_slots`)."""
        return int(self.mask_encoder.config.num_mask_slots)

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def mask_guidance_scale(self) -> float:
        return self._mask_guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self):
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def attention_kwargs(self) -> dict[str, Any] | None:
        return self._attention_kwargs

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        mask_video: Any = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        mask_guidance_scale: float = 1.0,
        mask_guidance_start: float = 0.0,
        mask_guidance_end: float = 1.0,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        anchor_latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, Any, dict], dict] | PipelineCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        preview_every: int | None = None,
        max_sequence_length: int | None = None,
        mask_labels: list | None = None,
    ) -> MVideoPipelineOutput | tuple:
        """Generate videos whose objects follow `mask_video`.

        Args:
            prompt: text prompt(s).
            negative_prompt: prompt(s) for the unconditional branch of text CFG (default "").
            mask_video: `MaskSequence` / list of them / tensor or array (B, T, K, H, W) or (T, K, H, W) in [0, 1];
                None generates without a mask condition.
            mask_labels: per mask item, the label of each slot ("red circle", None = unknown), e.g.
                `[["blue square", "red circle"]]`: each labelled object is moved to the slot of the prompt phrase
                its label matches (a MaskSequence's own labels are used when this is None; module docstring).
            height, width, num_frames: output size; default to the mask video's, else the transformer's sample size.
            num_inference_steps: denoising steps.
            guidance_scale: text CFG scale s_text (off when <= 1).
            mask_guidance_scale: mask guidance scale s_mask (0 = ignore the mask, 1 = plain conditioning).
            mask_guidance_start, mask_guidance_end: fractions of the steps between which the mask is applied.
            num_videos_per_prompt: videos per prompt.
            eta: DDIM eta.
            generator: torch generator(s) for the initial noise.
            latents: initial noise (B, F, C, h, w).
            prompt_embeds, negative_prompt_embeds: precomputed T5 embeddings (reuse across calls).
            init_latents, strength: start from `init_latents` noised to the level of step (1 - strength) * N.
            anchor_latents: clean latents (B, Fa, C, h, w) pinning the first Fa latent frames.
            output_type: "pil", "np", "pt" or "latent".
            return_dict: return `MVideoPipelineOutput` rather than a tuple.
            attention_kwargs: passed to the attention processors (e.g. LoRA `scale`).
            callback_on_step_end: `f(pipe, step, timestep, callback_kwargs) -> dict`, called after each step; it
                may return replacements for the tensors it received.
            callback_on_step_end_tensor_inputs: names from `_callback_tensor_inputs` passed to the callback.
            preview_every: every k-th step the callback also gets `callback_kwargs["preview"]`.
            max_sequence_length: T5 tokens (default: the transformer's `max_text_seq_length`).
        """
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = list(callback_on_step_end_tensor_inputs or [])
        max_sequence_length = max_sequence_length or self.transformer.config.max_text_seq_length

        mask_video = self.prepare_mask_video(mask_video, prompt, mask_labels)
        if mask_video is not None:
            num_frames = num_frames or mask_video.shape[1]
            height = height or mask_video.shape[3]
            width = width or mask_video.shape[4]
        height = height or self.transformer.config.sample_height * self.vae_scale_factor_spatial
        width = width or self.transformer.config.sample_width * self.vae_scale_factor_spatial
        num_frames = num_frames or self.transformer.config.sample_frames

        # 1. Check inputs
        self.check_inputs(
            prompt,
            negative_prompt,
            height,
            width,
            num_frames,
            mask_video,
            guidance_scale,
            mask_guidance_scale,
            mask_guidance_start,
            mask_guidance_end,
            num_inference_steps,
            num_videos_per_prompt,
            output_type,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            preview_every,
            prompt_embeds,
            negative_prompt_embeds,
            strength,
            init_latents,
            anchor_latents,
        )
        self._guidance_scale = guidance_scale
        self._mask_guidance_scale = mask_guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False

        # 2. Call parameters
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        total = batch_size * num_videos_per_prompt
        device = self._execution_device
        do_text_guidance = guidance_scale > 1.0
        if mask_video is not None and mask_video.shape[0] not in (1, batch_size):
            raise ValueError(
                f"`mask_video` has batch {mask_video.shape[0]}, expected 1 or {batch_size} (prompts)"
            )

        # 3. Encode the prompt (and the negative prompt for text CFG)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            negative_prompt,
            do_text_guidance,
            num_videos_per_prompt=num_videos_per_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        dtype = prompt_embeds.dtype

        # 4. Timesteps (the last `strength` fraction of them when starting from init_latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if strength < 1.0:
            run_steps = denoising_steps(num_inference_steps, strength)
            timesteps = timesteps[(num_inference_steps - run_steps) * self.scheduler.order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index((num_inference_steps - run_steps) * self.scheduler.order)
        self._num_timesteps = len(timesteps)

        # 5. Latents (CogVideoX 1.5: pad latent frames at the front to a multiple of patch_size_t)
        shape = self.latent_shape(total, num_frames, height, width)
        p_t = self.transformer.config.patch_size_t
        additional_frames = 0 if p_t is None else (-shape[1]) % p_t
        shape = (shape[0], shape[1] + additional_frames, *shape[2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        noise = latents.clone()
        if init_latents is not None:
            init_latents = self._fit_latents(
                init_latents, shape, additional_frames, "init_latents", device, dtype
            )
            if strength < 1.0:
                latents = self.scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(total))
        if anchor_latents is not None:
            anchor_latents = self._fit_anchor(anchor_latents, shape, additional_frames, device, dtype)

        # 6. Mask latents: encoded once, one per video
        mask_latents = None
        if mask_video is not None:
            mask_latents = self.encode_mask_video(mask_video, device, dtype)  # (B or 1, F, Cm, h, w)
            mask_latents = mask_latents.expand(batch_size, *mask_latents.shape[1:])
            mask_latents = mask_latents.repeat_interleave(num_videos_per_prompt, dim=0)
            if additional_frames:
                pad = mask_latents[:, :1].expand(-1, additional_frames, -1, -1, -1)
                mask_latents = torch.cat([pad, mask_latents], dim=1)
        window = mask_window_steps(len(timesteps), mask_guidance_start, mask_guidance_end)

        # 7. Rotary embeddings, scheduler kwargs
        image_rotary_emb = rotary_embeddings(
            self.transformer.config, latents.size(1), latents.size(3), latents.size(4), device
        )
        extra_step_kwargs = self._extra_step_kwargs(generator, eta)

        # 8. Denoising loop
        old_pred_original_sample = None
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                use_mask = mask_latents is not None and mask_guidance_scale != 0 and window[i]
                weights = guidance_weights(
                    guidance_scale if do_text_guidance else None, mask_guidance_scale if use_mask else None
                )
                noise_pred = self._predict(
                    latents, t, weights, prompt_embeds, negative_prompt_embeds, mask_latents, image_rotary_emb
                )

                # x_t -> x_t-1 (and the scheduler's clean-sample estimate, for previews)
                if isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred,
                        old_pred_original_sample,
                        t,
                        timesteps[i - 1] if i > 0 else None,
                        latents,
                        **extra_step_kwargs,
                        return_dict=False,
                    )
                    pred_original = old_pred_original_sample
                else:
                    step = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=True)
                    latents = step.prev_sample
                    pred_original = getattr(step, "pred_original_sample", None)
                latents = latents.to(dtype)

                if anchor_latents is not None:
                    latents = self._apply_anchor(latents, anchor_latents, noise, timesteps, i)

                if callback_on_step_end is not None:
                    tensors = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                        "mask_latents": mask_latents,
                    }
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                    if preview_every is not None and (i + 1) % preview_every == 0:
                        source = pred_original if pred_original is not None else latents
                        callback_kwargs["preview"] = self.decode_preview(
                            source[:, additional_frames:].to(dtype)
                        )
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop(
                        "negative_prompt_embeds", negative_prompt_embeds
                    )
                    mask_latents = callback_outputs.pop("mask_latents", mask_latents)
                progress_bar.update()
        self._current_timestep = None

        # 9. Decode
        latents = latents[:, additional_frames:]
        if output_type == "latent":
            video = latents
        else:
            video = self.decode_latents(latents)
            video = self.video_processor.postprocess_video(video=video.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return MVideoPipelineOutput(frames=video)

    def _predict(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        weights: dict[str, float],
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        mask_latents: torch.Tensor | None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """One batched transformer call over the branches in `weights`; returns sum(w * eps_branch)."""
        names = list(weights)
        embeds = {"uncond": negative_prompt_embeds, "text": prompt_embeds, "text_mask": prompt_embeds}
        model_input = self.scheduler.scale_model_input(torch.cat([latents] * len(names)), t)
        branch_masks = None
        if "text_mask" in names:
            # zeros for the no-mask branches: mask_embed has no bias, so zero latents add exactly nothing
            branch_masks = torch.cat(
                [mask_latents if name == "text_mask" else torch.zeros_like(mask_latents) for name in names]
            )
        noise_pred = self.transformer(
            hidden_states=model_input,
            encoder_hidden_states=torch.cat([embeds[name] for name in names]),
            timestep=t.expand(model_input.shape[0]),
            mask_latents=branch_masks,
            image_rotary_emb=image_rotary_emb,
            attention_kwargs=self._attention_kwargs,
            return_dict=False,
        )[0].float()
        chunks = noise_pred.chunk(len(names))
        combined = chunks[0] * weights[names[0]] if weights[names[0]] != 1.0 else chunks[0]
        for name, chunk in zip(names[1:], chunks[1:], strict=True):
            combined = combined + weights[name] * chunk
        return combined

    def _fit_latents(self, value, shape, additional_frames, name, device, dtype) -> torch.Tensor:
        value = value.to(device=device, dtype=dtype)
        if additional_frames:
            value = torch.cat([value[:, :1].expand(-1, additional_frames, -1, -1, -1), value], dim=1)
        if value.shape[0] == 1 and shape[0] > 1:
            value = value.expand(shape[0], *value.shape[1:])
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"`{name}` must have shape {tuple(shape)}, got {tuple(value.shape)}")
        return value

    def _fit_anchor(self, anchor, shape, additional_frames, device, dtype) -> torch.Tensor:
        """The anchor (B or 1, Fa, C, h, w) on the padded latent grid `shape`: Fa counts the video's latent frames,
        not the `additional_frames` of CogVideoX 1.5's front padding, which repeat the anchor's first frame."""
        anchor = anchor.to(device=device, dtype=dtype)
        if anchor.shape[0] == 1 and shape[0] > 1:
            anchor = anchor.expand(shape[0], *anchor.shape[1:])
        if (
            anchor.shape[0] != shape[0]
            or tuple(anchor.shape[2:]) != tuple(shape[2:])
            or anchor.shape[1] > shape[1] - additional_frames
        ):
            raise ValueError(
                f"`anchor_latents` must be (B, Fa <= {shape[1] - additional_frames}, {shape[2]}, {shape[3]}, "
                f"{shape[4]}), got {tuple(anchor.shape)}"
            )
        if additional_frames:
            anchor = torch.cat([anchor[:, :1].expand(-1, additional_frames, -1, -1, -1), anchor], dim=1)
        return anchor

    def _apply_anchor(self, latents, anchor, noise, timesteps, i) -> torch.Tensor:
        """Replace the anchored latent frames by the anchor at the noise level latents now have."""
        frames = anchor.shape[1]
        if i + 1 < len(timesteps):
            next_t = timesteps[i + 1 : i + 2].repeat(latents.shape[0])
            target = self.scheduler.add_noise(anchor, noise[:, :frames], next_t)
        else:
            target = anchor
        return torch.cat([target.to(latents.dtype), latents[:, frames:]], dim=1)


__all__ = [
    "MVideoPipeline",
    "MVideoPipelineOutput",
    "check_guidance_inputs",
    "denoising_steps",
    "guidance_weights",
    "mask_video_batch",
    "mask_window_steps",
    "rotary_embeddings",
    "to_unit_frames",
    "vae_compression",
]
