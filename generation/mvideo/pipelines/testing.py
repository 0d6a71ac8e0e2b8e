"""Tiny random MVideo components for tests everywhere (CPU, offline, about 0.1 s per 2-step call).

    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe(prompt="a red circle", mask_video=tiny_mask_video(), num_inference_steps=2, output_type="np")

Sizes follow diffusers' own CogVideoX tests: a 4-block CogVideoX VAE (8x spatial, 4x causal temporal, 4 latent
channels), a 2-layer T5 encoder (d_model 32) with an offline word-level `T5Tokenizer`, a 1-layer transformer
(4 heads x 8), and a `MaskEncoder` with 2 slots and 4 output channels. Default clip: 9 frames of 32 x 32
(latent grid 3 x 4 x 4). `tiny_mask_video` is one moving square per slot.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from generation.mvideo.models.mask_encoder import MaskEncoder
from generation.mvideo.models.transformer_mvideo import MVideoTransformer3DModel

TINY_WORDS = (
    "a red green blue yellow white black circle square triangle ball dog cat person car moves runs jumps left "
    "right up down and the of on in with"
).split()
TINY_HEIGHT = TINY_WIDTH = 32
TINY_FRAMES = 9
TINY_MAX_TEXT = 16


def tiny_tokenizer() -> T5Tokenizer:
    """Word-level unigram T5 tokenizer built offline from `TINY_WORDS` (plus letters for unknown words)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + word, -1.0) for word in TINY_WORDS]
    pieces += [("\u2581", -5.0)] + [(ch, -8.0) for ch in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=TINY_MAX_TEXT)


def tiny_text_encoder(vocab_size: int, seed: int = 0) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKLCogVideoX:
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval()


def tiny_transformer(seed: int = 0, mask_in_channels: int = 4, **overrides: Any) -> MVideoTransformer3DModel:
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=TINY_WIDTH // 8,
        sample_height=TINY_HEIGHT // 8,
        sample_frames=TINY_FRAMES,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=TINY_MAX_TEXT,
        mask_in_channels=mask_in_channels,
    )
    kwargs.update(overrides)
    return MVideoTransformer3DModel(**kwargs).eval()


def tiny_mask_encoder(seed: int = 0, num_mask_slots: int = 2, mask_in_channels: int = 4) -> MaskEncoder:
    torch.manual_seed(seed)
    return MaskEncoder(
        num_mask_slots=num_mask_slots,
        mask_in_channels=mask_in_channels,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        hidden_channels=16,
        num_layers=1,
    ).eval()


def randomize_mask_path(transformer: MVideoTransformer3DModel, seed: int = 0, std: float = 0.5) -> None:
    """Give the zero-initialised mask projection random weights, as training would, so masks change outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = transformer.mask_embed.weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * std)


def tiny_mvideo_components(seed: int = 0, trained_mask_path: bool = True) -> dict[str, Any]:
    """Keyword arguments of `MVideoPipeline` (tokenizer, text_encoder, vae, transformer, mask_encoder, scheduler).

    `trained_mask_path=True` (default) gives the transformer's zero-initialised mask projection random weights,
    so that tests see the mask change the output; False keeps the fresh zero start.
    """
    tokenizer = tiny_tokenizer()
    transformer = tiny_transformer(seed)
    if trained_mask_path:
        randomize_mask_path(transformer, seed)
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_text_encoder(len(tokenizer), seed),
        "vae": tiny_vae(seed),
        "transformer": transformer,
        "mask_encoder": tiny_mask_encoder(seed),
        "scheduler": CogVideoXDDIMScheduler(
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            snr_shift_scale=1.0,
        ),
    }


get_dummy_components = tiny_mvideo_components


def tiny_mask_video(
    num_frames: int = TINY_FRAMES,
    num_slots: int = 2,
    height: int = TINY_HEIGHT,
    width: int = TINY_WIDTH,
    batch_size: int = 1,
    size: int = 8,
) -> torch.Tensor:
    """(B, T, K, H, W) masks: slot k is a `size` x `size` square moving right by one pixel a frame."""
    video = torch.zeros(batch_size, num_frames, num_slots, height, width)
    for t in range(num_frames):
        for k in range(num_slots):
            top = (4 + 12 * k) % max(1, height - size)
            left = (2 + t + 6 * k) % max(1, width - size)
            video[:, t, k, top : top + size, left : left + size] = 1.0
    return video


def tiny_vace_components(seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of a tiny random `WanVACEPipeline` / `MaskGuidedVACEPipeline` (Wan VAE 8x/4x, 16 latent
    channels; 3-layer VACE transformer with patch 1 x 2 x 2) for CPU tests."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    ).eval()
    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        vace_layers=[0, 2],
        vace_in_channels=96,
    ).eval()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "transformer": transformer,
    }


def tiny_vace_pipeline(seed: int = 0) -> Any:
    """A tiny random plain `WanVACEPipeline` (what a published Wan VACE folder holds; `tiny_vace_components`)."""
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(**tiny_vace_components(seed))


class PeakTensorMemory:
    """Peak bytes of CPU tensor storages allocated inside the `with` block and alive at once (a dispatch mode).

    Tensors made before the block (weights) are not counted, so this measures working memory, e.g. per chunk
    of a long video. Slow-ish (it checks liveness after every op): for tiny models and benchmarks.
    """

    def __init__(self) -> None:
        self.peak = 0
        self.current = 0
        self._live: dict[int, tuple[Any, int]] = {}
        self._mode: Any = None

    def __enter__(self) -> PeakTensorMemory:
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils import _pytree
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for key in [k for k, (ref, _) in tracker._live.items() if ref.expired()]:
                    tracker.current -= tracker._live.pop(key)[1]
                for leaf in _pytree.tree_leaves(out):
                    if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu":
                        storage = leaf.untyped_storage()
                        key = storage._cdata
                        if key not in tracker._live:
                            tracker._live[key] = (StorageWeakRef(storage), storage.nbytes())
                            tracker.current += storage.nbytes()
                tracker.peak = max(tracker.peak, tracker.current)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
