"""`ShapesModelSpec` (the sizes of a shapes-world MVideo) and `SHAPES_SAMPLING`, without torch or diffusers.

Kept apart from generation/mvideo/shapes/model.py (which builds the model and imports torch and diffusers) so
that the training recipes (generation/mvideo/training/config.py), and with them `kmono mvideo train --help`,
and the video service's engine spec import no heavy module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapesModelSpec:
    """Sizes of a shapes-world MVideo built from scratch (see `build_shapes_pipeline`)."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    num_mask_slots: int = 3
    min_objects: int = 1
    max_objects: int = 3
    train_object_count_weights: tuple[float, ...] | None = None
    """Frequencies of 1..max_objects objects in the training data (None: uniform, as in evaluation)."""
    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    patch_size: int = 4
    patch_size_t: int | None = None
    """Frames per temporal patch; None: one frame per token (frame-exact timing: with 2, both frames of a pair
    came out nearly identical, measured in issue 15)."""
    time_embed_dim: int = 128
    text_hidden_size: int = 64
    text_layers: int = 1
    max_text_length: int = 16
    mask_in_channels: int = 8
    mask_hidden_channels: int = 32
    mask_layers: int = 0
    spatial_compression_ratio: int = 1
    """Space-to-depth factor of the pixel-space autoencoder (1 = the transformer patches the pixels)."""
    prediction_type: str = "sample"
    """What the transformer predicts: "sample" (x_0, clean frames; training/losses.py) or "v_prediction"."""


SHAPES_SAMPLING: dict = {
    "num_inference_steps": 50,
    "guidance_scale": 1.0,
    "mask_guidance_scale": 1.0,
    "max_sequence_length": 16,
}
"""Sampling settings of the embedded default. Text CFG is off: the model follows colours without it. 50 DDIM
steps (CogVideoX's own default), chosen on held-out samples 1000-1031 (`kmono mvideo eval --first-sample 1000
--num-samples 32 --steps N`), never on the reported 0-63: per-frame mIoU 0.925 / 0.924 / 0.925 and background
noise 3.31 / 3.14 / 2.10 (1/255) at 10 / 25 / 50 steps. With x-prediction more steps only clean the background
(the v-prediction default got noisier with more steps)."""

SHAPES_TEXT_ONLY = "layout"
"""How the embedded default answers a request without masks (`engine_file.TEXT_ONLY_MODES`): it plans a layout
from the prompt first (`generation.mvideo.shapes.layout`). With its masks dropped it draws almost nothing (text-only
colour accuracy 0.13, `color_acc_unmasked` in default/eval.json); with a planned layout the same words are drawn
(`text_color_acc`)."""
