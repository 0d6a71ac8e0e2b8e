"""The shapes-world MVideo: building it from scratch and loading the committed embedded default.

    pipe = load_shapes_default()                                   # generation/mvideo/shapes/default
    sample = ShapesWorld().sample(0, split="eval")
    video = pipe(sample.caption, mask_video=sample.slot_masks(3)[None].astype("float32"),
                 **SHAPES_SAMPLING).frames                          # see SHAPES_SAMPLING for the settings

The model (our choices, after the measured probe in TOOLCHAIN.md and the redesign of issue 15): pixel space
(`PixelSpaceAutoencoder`, no VAE to train), an `MVideoTransformer3DModel` of 4 layers x 4 heads x 32 with 4 x 4
patches of ONE frame (`patch_size_t=None`, frame-exact: with 2-frame patches both frames of a pair came out nearly
the same) and rotary embeddings (32 x 32 x 8 frames = 512 video tokens), a `MaskEncoder` with no compression over
3 object slots (a per-pixel MLP: the 4 x 4 patch projection of the mask already sees every pixel), a one-layer
word-level text encoder with phrase-index embeddings (slot k reads phrase k; `pipelines/phrases.py` puts each
labelled object in its phrase's slot), x-prediction (`prediction_type="sample"`: the network outputs clean frames,
scored in v-space with the Min-SNR cap, training/losses.py) with the cosine ("squaredcos_cap_v2") schedule and
DDIM with trailing timesteps at sampling time. Measured: v-prediction trained the same way left 17-18/255 of
background noise at 1200 steps where x-prediction had 5.3, and got worse with more sampling steps. Trained from
scratch with condition dropout (text dropped 15%, masks 30%); the transformer's mask projection starts random.

How it is trained is the `shapes-default` recipe (generation/mvideo/training/config.py); what it reaches is
default/eval.json (`kmono mvideo eval`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from torch import nn

from generation.mvideo.models import MaskEncoder, MVideoTransformer3DModel
from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.shapes.components import PixelSpaceAutoencoder, build_text_encoder, build_tokenizer
from generation.mvideo.shapes.spec import (  # also importable from here, as before
    ShapesModelSpec,
)

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
"""Where the committed embedded default lives."""


def build_shapes_scheduler(prediction_type: str) -> DDIMScheduler:
    """Cosine betas, DDIM with trailing timesteps (the first sampling step is at t = 999)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
    )


def build_shapes_pipeline(spec: ShapesModelSpec | None = None, seed: int = 0) -> MVideoPipeline:
    """A randomly initialised shapes-world MVideoPipeline of sizes `spec` (deterministic in `seed`)."""
    spec = spec or ShapesModelSpec()
    s = spec.spatial_compression_ratio
    vae = PixelSpaceAutoencoder(in_channels=3, spatial_compression_ratio=s)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = build_text_encoder(spec.text_hidden_size, spec.text_layers, 2, spec.max_text_length)
        transformer = MVideoTransformer3DModel(
            num_attention_heads=spec.num_attention_heads,
            attention_head_dim=spec.attention_head_dim,
            in_channels=vae.latent_channels,
            out_channels=vae.latent_channels,
            time_embed_dim=spec.time_embed_dim,
            text_embed_dim=spec.text_hidden_size,
            num_layers=spec.num_layers,
            sample_width=spec.width // s,
            sample_height=spec.height // s,
            sample_frames=spec.num_frames,
            patch_size=spec.patch_size,
            patch_size_t=spec.patch_size_t,
            temporal_compression_ratio=1,
            max_text_seq_length=spec.max_text_length,
            use_rotary_positional_embeddings=True,
            mask_in_channels=spec.mask_in_channels,
        )
        mask_encoder = MaskEncoder(
            num_mask_slots=spec.num_mask_slots,
            mask_in_channels=spec.mask_in_channels,
            spatial_compression_ratio=s,
            temporal_compression_ratio=1,
            hidden_channels=spec.mask_hidden_channels,
            num_layers=spec.mask_layers,
        )
        # From scratch there is no base model to preserve, so the mask projection starts random like any input
        # projection (the zero start is for fine-tuning a pretrained base; measured: the mask path learns faster).
        nn.init.kaiming_uniform_(transformer.mask_embed.weight, a=5**0.5)
    return MVideoPipeline(
        tokenizer=build_tokenizer(spec.max_text_length),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        mask_encoder=mask_encoder,
        scheduler=build_shapes_scheduler(spec.prediction_type),
    )


def load_shapes_default(
    path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> MVideoPipeline:
    """The committed embedded default (or another shapes-world pipeline folder), in float32 on `device`."""
    path = Path(path) if path is not None else DEFAULT_DIR
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no shapes-world pipeline at {path}; reproduce it with "
            "`kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default`"
        )
    pipe = MVideoPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
