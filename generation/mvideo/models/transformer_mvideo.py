"""MVideo's denoiser: CogVideoX's 3D transformer plus mask-condition input channels.

MVideo (arXiv 2411.08328) fine-tunes CogVideoX and feeds the encoded mask sequence to it by concatenating it
with the video latents on the channel axis. `MVideoTransformer3DModel` is `CogVideoXTransformer3DModel` with
`mask_in_channels` more input channels, realised as follows (our choices):

- **A separate zero-initialised patch projection, added.** Concatenating `[latents, mask_latents]` on the
  channel axis and patchifying with one widened projection is, by linearity, exactly
  `proj(latents) + mask_embed(mask_latents)` with `mask_embed` the extra input columns of the widened weight.
  We keep the two halves apart: `patch_embed` holds CogVideoX's weights under CogVideoX's parameter names
  (published checkpoints load unchanged), and `mask_embed` (no bias: the base projection has it already) holds
  the mask columns. `mask_embed` has the same patching as `patch_embed.proj` - a stride-`patch_size` Conv2d for
  CogVideoX 1.0 (`patch_size_t=None`), a Linear over `patch_size_t x patch_size x patch_size` patches for 1.5.
- **Zero start.** `mask_embed` starts at zero, so until trained the model's output equals the base model's
  bit for bit, with or without a mask (x + 0 == x), and the fine-tuning starts from CogVideoX exactly.
- **Dropped condition = no mask tokens.** `mask_latents=None` skips `mask_embed` entirely, which is the same as
  all-zero mask latents; training drops the condition the same way (classifier-free mask guidance).

The extra parameters cost `mask_in_channels x patch_size^2 (x patch_size_t) x inner_dim` weights: 16 mask
channels on CogVideoX-2b (inner dim 1920, patch 2) are 123k parameters beside 1.69B.

`MVideoXFormersAttnProcessor` is CogVideoX's attention (QK norm, rotary embeddings on the video tokens only)
with xFormers' memory-efficient kernel; diffusers' generic `XFormersAttnProcessor` would drop both. Its steps
before and after the kernel are `cogvideox_attention_inputs` / `_outputs`, shared with the training-only
binding-loss processor (generation/mvideo/training/binding.py).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import apply_lora_scale
from torch import nn

__all__ = [
    "ModelMixin",
    "MVideoTransformer3DModel",
    "MVideoXFormersAttnProcessor",
    "cogvideox_attention_inputs",
    "cogvideox_attention_outputs",
]
# `ModelMixin` is re-exported on purpose: diffusers' pipeline loader looks up the loading base class by name in
# the module that defines a custom component.


class MVideoTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with `mask_in_channels` extra, zero-initialised input channels for the mask condition.

    All arguments except `mask_in_channels` are `CogVideoXTransformer3DModel`'s (see its docstring).

    Args:
        mask_in_channels (`int`, defaults to 16):
            Channels of the encoded mask sequence on the latent grid (`MaskEncoder.config.mask_in_channels`).
    """

    _skip_layerwise_casting_patterns = ["patch_embed", "mask_embed", "norm"]
    _no_split_modules = ["CogVideoXBlock", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        mask_in_channels: int = 16,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        if mask_in_channels < 0:
            raise ValueError(f"mask_in_channels must be >= 0, got {mask_in_channels}")
        inner_dim = num_attention_heads * attention_head_dim
        self.mask_embed: nn.Module | None = None
        if mask_in_channels > 0:
            if patch_size_t is None:
                self.mask_embed = nn.Conv2d(
                    mask_in_channels, inner_dim, kernel_size=patch_size, stride=patch_size, bias=False
                )
            else:
                self.mask_embed = nn.Linear(
                    mask_in_channels * patch_size * patch_size * patch_size_t, inner_dim, bias=False
                )
            nn.init.zeros_(self.mask_embed.weight)

    @classmethod
    def from_cogvideox(
        cls,
        base: CogVideoXTransformer3DModel | str | os.PathLike,
        mask_in_channels: int = 16,
        **from_pretrained_kwargs: Any,
    ) -> MVideoTransformer3DModel:
        """An MVideo transformer holding `base`'s weights and a zero mask projection (same outputs as `base`).

        `base` is a `CogVideoXTransformer3DModel` or a path / hub id that `CogVideoXTransformer3DModel.
        from_pretrained` accepts (`from_pretrained_kwargs`, e.g. `subfolder="transformer"`, `torch_dtype`, go
        to it). The new model is built on the meta device and takes `base`'s tensors (no second random copy).
        """
        if not isinstance(base, CogVideoXTransformer3DModel):
            base = CogVideoXTransformer3DModel.from_pretrained(base, **from_pretrained_kwargs)
        elif from_pretrained_kwargs:
            raise ValueError("from_pretrained_kwargs are only used when `base` is a path or hub id")
        init_names = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters) - {"self"}
        config = {k: v for k, v in base.config.items() if k in init_names}
        with torch.device("meta"):
            model = cls(**config, mask_in_channels=mask_in_channels)
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False, assign=True)
        if unexpected or any(not name.startswith("mask_embed.") for name in missing):
            raise ValueError(f"base weights do not fit: missing {missing}, unexpected {unexpected}")
        reference = next(base.parameters())
        # Non-persistent buffers (sin-cos position tables) are not in the state dict: take them from `base`.
        for name, buffer in base.named_buffers():
            module_name, _, buffer_name = name.rpartition(".")
            owner = model.get_submodule(module_name) if module_name else model
            owner.register_buffer(buffer_name, buffer, persistent=buffer_name in owner.state_dict())
        if model.mask_embed is not None:
            model.mask_embed.to_empty(device=reference.device)
            model.mask_embed.to(reference.dtype)
            nn.init.zeros_(model.mask_embed.weight)
        model.set_attn_processor(base.attn_processors)
        model.train(base.training)
        return model

    def embed_mask(self, mask_latents: torch.Tensor) -> torch.Tensor:
        """Mask latents (B, F, C_mask, H, W) -> mask tokens (B, F' x H/p x W/p, inner_dim), in the video-token order."""
        batch_size, num_frames, channels, height, width = mask_latents.shape
        p, p_t = self.config.patch_size, self.config.patch_size_t
        if p_t is None:
            tokens = self.mask_embed(mask_latents.reshape(-1, channels, height, width))  # (B*F, D, H/p, W/p)
            tokens = tokens.view(batch_size, num_frames, *tokens.shape[1:])
            return tokens.flatten(3).transpose(2, 3).flatten(1, 2)  # (B, F*H/p*W/p, D)
        tokens = mask_latents.permute(0, 1, 3, 4, 2)  # (B, F, H, W, C)
        tokens = tokens.reshape(batch_size, num_frames // p_t, p_t, height // p, p, width // p, p, channels)
        tokens = tokens.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(4, 7).flatten(1, 3)  # (B, N, C*p_t*p*p)
        return self.mask_embed(tokens)

    def _check_mask_latents(self, mask_latents: torch.Tensor, hidden_states: torch.Tensor) -> None:
        if self.mask_embed is None:
            raise ValueError("mask_latents were given but this model has mask_in_channels=0")
        b, f, _, h, w = hidden_states.shape
        expected = (b, f, self.config.mask_in_channels, h, w)
        if tuple(mask_latents.shape) != expected:
            raise ValueError(
                f"mask_latents must have shape (B, F, mask_in_channels, H, W) = {expected}, "
                f"got {tuple(mask_latents.shape)}"
            )

    # Copied from diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXTransformer3DModel.forward (diffusers==0.42.1)
    # with `mask_latents`: a new argument, shape-checked, embedded by `embed_mask` and added to the video patch tokens
    # between the patch embedding and the embedding dropout (step 2). Nothing else differs but layout and comments.
    # `_copied_forward_sha256` fingerprints the code of the forward copied from (`forward_fingerprint` in
    # transformer_mvideo_test.py); that test fails when the installed diffusers' forward no longer matches it.
    _copied_forward_sha256 = "04b9f6fdc257afd49f96aba87b99b69758836ab2369a2ede7af37739c78c1571"

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        mask_latents: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """CogVideoX's forward with the mask condition added to the video patch tokens.

        Args:
            hidden_states: noisy video latents (B, F, C, H, W).
            encoder_hidden_states: text embeddings (B, L, text_embed_dim).
            timestep: diffusion timestep(s), (B,) or a scalar.
            mask_latents: encoded mask sequence (B, F, mask_in_channels, H, W) on the latent grid, or None for
                "no mask condition" (the same as zeros).
            timestep_cond, ofs, image_rotary_emb, attention_kwargs, return_dict: as in CogVideoX.
        """
        batch_size, num_frames, channels, height, width = hidden_states.shape
        if mask_latents is not None:
            self._check_mask_latents(mask_latents, hidden_states)

        # 1. Time embedding
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            ofs_emb = self.ofs_proj(ofs).to(dtype=hidden_states.dtype)
            emb = emb + self.ofs_embedding(ofs_emb)

        # 2. Patch embedding: text tokens, then video tokens (+ mask tokens: the channel-wise concatenation)
        text_seq_length = encoder_hidden_states.shape[1]
        hidden_states = self.patch_embed(encoder_hidden_states, hidden_states)  # (B, L + N, D)
        if mask_latents is not None:
            mask_tokens = self.embed_mask(mask_latents.to(hidden_states.dtype))  # (B, N, D)
            hidden_states = torch.cat(
                [hidden_states[:, :text_seq_length], hidden_states[:, text_seq_length:] + mask_tokens], dim=1
            )
        hidden_states = self.embedding_dropout(hidden_states)
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]

        # 3. Transformer blocks
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, emb, image_rotary_emb, attention_kwargs
                )
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    temb=emb,
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=attention_kwargs,
                )
        hidden_states = self.norm_final(hidden_states)

        # 4. Final block
        hidden_states = self.norm_out(hidden_states, temb=emb)
        hidden_states = self.proj_out(hidden_states)  # (B, N, p*p[*p_t]*C_out)

        # 5. Unpatchify
        p, p_t = self.config.patch_size, self.config.patch_size_t
        if p_t is None:
            output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
            output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        else:
            output = hidden_states.reshape(
                batch_size, (num_frames + p_t - 1) // p_t, height // p, width // p, -1, p_t, p, p
            )
            output = output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def set_use_memory_efficient_attention_xformers(
        self, valid: bool, attention_op: Any | None = None
    ) -> None:
        """Switch every attention layer to xFormers (`valid=True`) or back to SDPA, keeping CogVideoX's maths."""
        processor = MVideoXFormersAttnProcessor(attention_op) if valid else CogVideoXAttnProcessor2_0()
        self.set_attn_processor(processor)


def cogvideox_attention_inputs(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """CogVideoX attention up to the kernel: text + video tokens as (B, heads, S, d) query, key and value, QK norm
    applied and rotary embeddings on the video tokens (as `CogVideoXAttnProcessor2_0`). Returns (query, key,
    value, text_seq_length)."""
    text_seq_length = encoder_hidden_states.size(1)
    hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)  # (B, S, D)
    batch_size = hidden_states.shape[0]
    query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, S, d)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    if image_rotary_emb is not None:
        query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
        if not attn.is_cross_attention:
            key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)
    return query, key, value, text_seq_length


def cogvideox_attention_outputs(
    attn: Attention, hidden_states: torch.Tensor, text_seq_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (B, S, heads x d) -> output projection, split into (video tokens, text tokens)."""
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    encoder_hidden_states, hidden_states = hidden_states.split(
        [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
    )
    return hidden_states, encoder_hidden_states


class MVideoXFormersAttnProcessor:
    """`CogVideoXAttnProcessor2_0` with `xformers.ops.memory_efficient_attention` instead of SDPA."""

    def __init__(self, attention_op: Any | None = None):
        self.attention_op = attention_op

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import xformers.ops

        if attention_mask is not None:
            raise ValueError("MVideoXFormersAttnProcessor does not take an attention_mask")
        query, key, value, text_seq_length = cogvideox_attention_inputs(
            attn, hidden_states, encoder_hidden_states, image_rotary_emb
        )
        # xFormers takes (B, S, heads, d)
        hidden_states = xformers.ops.memory_efficient_attention(
            query.transpose(1, 2).contiguous(),
            key.transpose(1, 2).contiguous(),
            value.transpose(1, 2).contiguous(),
            op=self.attention_op,
        )
        hidden_states = hidden_states.flatten(2).to(query.dtype)  # (B, S, heads * d)
        return cogvideox_attention_outputs(attn, hidden_states, text_seq_length)
