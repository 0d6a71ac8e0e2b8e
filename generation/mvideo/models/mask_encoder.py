"""Mask video -> mask latents on the VAE's latent grid (the condition MVideo concatenates with the latents).

Input: a mask video (B, T, K, H, W), float in [0, 1], with K = `num_mask_slots` object slots. Output:
(B, F, mask_in_channels, H / s, W / s) with s = `spatial_compression_ratio` and, for a causal video VAE with
temporal ratio t (CogVideoX: 4), F = 1 + (T - 1) / t latent frames - the grid of the video latents.

Our choices (the paper says only that the mask sequence is concatenated with the latents channel-wise):

- **Slots.** Slot k holds the k-th object: by default the k-th object of the `MaskSequence` in ascending id
  order (`mask_sequence_to_slots(..., object_ids=...)` picks another order, e.g. the order in which the prompt
  mentions the objects). Unused slots are zero; more objects than slots is an error. Slots keep objects apart,
  so two touching objects stay two objects, and an edit of one object's masks changes one channel.
- **A light learned encoder, not the VAE.** CogVideoX-Fun encodes its control video with the video VAE. For
  binary masks that is wasteful: a mask video has K channels (the VAE takes 3, so K > 3 slots need several
  passes), carries no texture, and the VAE is the most expensive part of a CogVideoX pass after the
  transformer. Our encoder is exact space-to-depth on the latent grid (each latent cell sees every pixel of
  its s x s patch in each of the t frames it covers - nothing is lost, even a 1-pixel object) followed by a
  few small convolutions. Measured with `python -m benchmarks.mvideo_longvideo --mask-encoder-cost` on this
  project's 2-core CPU (torch 2.13, float32, 1 thread, machine shared, load ~6: absolute times are inflated,
  ratios hold); the VAE rows encode one slot as a grey 3-channel video with the VAE's encoder half and random
  weights (K slots cost ceil(K / 3) to K such passes); ours encodes all 4 slots at once:

  | encoder                                        | params | 9 x 64 x 64 | 9 x 240 x 360 | 49 x 480 x 720 |
  |------------------------------------------------|--------|-------------|---------------|----------------|
  | CogVideoX VAE encoder, tiny test config        | 0.025M | 0.18 s      | 2.36 s        | (not run)      |
  | CogVideoX VAE encoder, CogVideoX-2b config     | 92.2M  | 12.0 s      | 254 s         | (not run)      |
  | `MaskEncoder` defaults (K=4, hidden 64)        | 0.14M  | 0.008 s     | 0.092 s       | 3.1 s          |

  At 9 x 240 x 360 the learned encoder is ~2,800x cheaper than VAE-encoding one slot with CogVideoX-2b's VAE
  (and 26x cheaper than even the tiny test VAE), adds 0.14M parameters, and needs no VAE encoder on the
  device for the condition path. Its cost: it is trained from scratch with the transformer (the VAE route
  starts from features made for natural images, which binary masks are not).
- **Causal time.** Frame 0 gets a latent frame of its own and each later latent frame covers t frames, as in
  CogVideoX's causal VAE: frame 0 is repeated t - 1 times at the front, then frames are grouped by t. T must
  be 1 + k t (CogVideoX's 49 = 1 + 48); with `temporal_compression_ratio=1` (a pixel-space model) any T works.
- **Compression factors are config fields**, so a pixel-space tiny model (spatial 1, temporal 1) uses the same
  class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["MaskEncoder", "ModelMixin", "mask_sequence_to_slots"]
# `ModelMixin` is re-exported on purpose: diffusers' pipeline loader looks up the loading base class by name in
# the module that defines a custom component.


class MaskEncoder(ModelMixin, ConfigMixin):
    """Learned space-to-depth encoder from K-slot mask videos to mask latents on the latent grid.

    Args:
        num_mask_slots (`int`, defaults to 4): K, object slots of the input mask video.
        mask_in_channels (`int`, defaults to 16): output channels (`MVideoTransformer3DModel.config.mask_in_channels`).
        spatial_compression_ratio (`int`, defaults to 8): pixels per latent cell along H and W (the VAE's).
        temporal_compression_ratio (`int`, defaults to 4): frames per latent frame after the first (the VAE's).
        hidden_channels (`int`, defaults to 64): width of the convolutions.
        num_layers (`int`, defaults to 2): 3x3 convolution layers between the input and output 1x1 projections.
    """

    @register_to_config
    def __init__(
        self,
        num_mask_slots: int = 4,
        mask_in_channels: int = 16,
        spatial_compression_ratio: int = 8,
        temporal_compression_ratio: int = 4,
        hidden_channels: int = 64,
        num_layers: int = 2,
    ):
        super().__init__()
        for name, value in (
            ("num_mask_slots", num_mask_slots),
            ("mask_in_channels", mask_in_channels),
            ("spatial_compression_ratio", spatial_compression_ratio),
            ("temporal_compression_ratio", temporal_compression_ratio),
            ("hidden_channels", hidden_channels),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        s, t = spatial_compression_ratio, temporal_compression_ratio
        self.proj_in = nn.Conv2d(num_mask_slots * t * s * s, hidden_channels, kernel_size=1)
        self.layers = nn.ModuleList(
            [nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1) for _ in range(num_layers)]
        )
        self.proj_out = nn.Conv2d(hidden_channels, mask_in_channels, kernel_size=1)

    def num_latent_frames(self, num_frames: int) -> int:
        """Latent frames for a `num_frames`-frame mask video (ValueError if it is not 1 + k * t)."""
        t = self.config.temporal_compression_ratio
        if num_frames < 1 or (num_frames - 1) % t != 0:
            raise ValueError(
                f"mask video frame count must be 1 + k * {t} (temporal_compression_ratio={t}), got {num_frames}"
            )
        return (num_frames - 1) // t + 1

    def forward(self, mask_video: torch.Tensor) -> torch.Tensor:
        """(B, T, K, H, W) in [0, 1] -> (B, F, mask_in_channels, H / s, W / s), F = 1 + (T - 1) / t."""
        if mask_video.ndim != 5:
            raise ValueError(f"mask_video must be (B, T, K, H, W), got shape {tuple(mask_video.shape)}")
        batch_size, num_frames, slots, height, width = mask_video.shape
        s, t = self.config.spatial_compression_ratio, self.config.temporal_compression_ratio
        if slots != self.config.num_mask_slots:
            raise ValueError(f"mask_video has {slots} slots, this encoder takes {self.config.num_mask_slots}")
        if height % s or width % s:
            raise ValueError(f"mask_video height and width must be multiples of {s}, got {height}x{width}")
        latent_frames = self.num_latent_frames(num_frames)

        x = mask_video.to(self.proj_in.weight.dtype)
        x = torch.cat(
            [x[:, :1].expand(-1, t - 1, -1, -1, -1), x], dim=1
        )  # (B, t*F, K, H, W), causal front pad
        x = x.reshape(
            batch_size * latent_frames, t * slots, height, width
        )  # t frames of K slots per latent frame
        x = F.pixel_unshuffle(x, s)  # (B*F, t*K*s*s, H/s, W/s)
        x = F.silu(self.proj_in(x))
        for layer in self.layers:
            x = F.silu(layer(x))
        x = self.proj_out(x)  # (B*F, C_mask, H/s, W/s)
        return x.reshape(batch_size, latent_frames, *x.shape[1:])


def mask_sequence_to_slots(
    sequence: Any,
    num_slots: int,
    *,
    object_ids: Sequence[int] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """Frames [start, stop) of a `libs.media.MaskSequence` as a slot mask video (T, K, H, W) float32 in {0, 1}.

    Slot k is `object_ids[k]` (default: the sequence's object ids in ascending order); unused slots are zero.
    Only the requested frames are decoded, so a long sequence can be converted chunk by chunk.
    """
    ids = list(sequence.object_ids) if object_ids is None else [int(i) for i in object_ids]
    if len(ids) > num_slots:
        raise ValueError(
            f"mask sequence has {len(ids)} objects {ids} but the mask encoder has {num_slots} slots; "
            "pass object_ids to choose which objects to keep"
        )
    unknown = sorted(set(ids) - set(sequence.object_ids))
    if unknown:
        raise ValueError(
            f"object_ids {unknown} are not in the mask sequence (ids {list(sequence.object_ids)})"
        )
    stop = sequence.num_frames if stop is None else stop
    if not 0 <= start <= stop <= sequence.num_frames:
        raise ValueError(
            f"frame range [{start}, {stop}) is outside the mask sequence's {sequence.num_frames} frames"
        )
    out = np.zeros((stop - start, num_slots, sequence.height, sequence.width), dtype=np.float32)
    id_column = np.asarray(ids, dtype=np.int64)[:, None, None]
    for i, t in enumerate(range(start, stop)):
        if ids:
            out[i, : len(ids)] = sequence.id_map(t)[None] == id_column
    return torch.from_numpy(out)
