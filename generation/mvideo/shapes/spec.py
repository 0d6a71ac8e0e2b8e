"""`ShapesModelSpec`: the sizes of a shapes-world MVideo, without torch or diffusers.

Kept apart from generation/mvideo/shapes/model.py (which builds the model and imports torch and diffusers) so
that the training recipes (generation/mvideo/training/config.py), and with them `kmono mvideo train --help`,
import no heavy module.
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
    patch_size_t: int | None = 2
    time_embed_dim: int = 128
    text_hidden_size: int = 64
    text_layers: int = 1
    max_text_length: int = 16
    mask_in_channels: int = 8
    mask_hidden_channels: int = 32
    mask_layers: int = 0
    spatial_compression_ratio: int = 1
    """Space-to-depth factor of the pixel-space autoencoder (1 = the transformer patches the pixels)."""
