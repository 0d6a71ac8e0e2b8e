"""The small components of the shapes-world MVideo: a pixel-space "VAE", a word tokenizer, a tiny text encoder.

Our choices:

- **Pixel space.** `PixelSpaceAutoencoder` is parameter-free: `encode` is exact space-to-depth by
  `spatial_compression_ratio` (1 = identity) and `decode` its inverse, behind the diffusers autoencoder interface
  (`encode(x).latent_dist.sample()`, `decode(z).sample`, `config.scaling_factor`,
  `config.temporal_compression_ratio`), so `MVideoPipeline` runs on it unchanged and a tiny transformer trains on
  32 x 32 videos within CPU minutes (no VAE to train, nothing lost to compression). It holds one frozen
  1-element parameter so that `next(vae.parameters())`, `device`/`dtype` and save/load work.
- **Words, not sub-words.** The tokenizer is a `BertTokenizerFast` over the shapes-world vocabulary (colours,
  shapes, "a", "and", ","); any other word maps to [UNK]. The text encoder (`ShapesTextEncoder`) is a one-layer
  transformer over learned token + absolute position embeddings: the positions let it tell "a red circle and a blue square" from
  "a blue circle and a red square", which binds colours to mask slots (slot k = k-th object named).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import BertTokenizerFast
from transformers.modeling_outputs import BaseModelOutput

from generation.mvideo.shapes.world import CAPTION_WORDS

__all__ = [
    "DeterministicLatentDistribution",
    "ModelMixin",
    "PixelSpaceAutoencoder",
    "ShapesTextEncoder",
    "build_text_encoder",
    "build_tokenizer",
    "shapes_vocabulary",
]
# `ModelMixin` is re-exported on purpose: diffusers' pipeline loader looks up the loading base class by name in
# the module that defines a custom component.

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class DeterministicLatentDistribution:
    """The latent "distribution" of a deterministic encoder: `sample()` and `mode()` are the latents."""

    latents: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latents

    def mode(self) -> torch.Tensor:
        return self.latents


class PixelSpaceAutoencoder(ModelMixin, ConfigMixin):
    """A parameter-free video "VAE": exact space-to-depth (B, C, F, H, W) -> (B, C*s*s, F, H/s, W/s) and back.

    Args:
        in_channels (`int`, defaults to 3): image channels.
        spatial_compression_ratio (`int`, defaults to 1): s; 1 makes the latents the pixels themselves.
        temporal_compression_ratio (`int`, defaults to 1): must be 1 (frames are never merged).
        scaling_factor (`float`, defaults to 1.0): latents are multiplied by it after encoding (as with any VAE).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        spatial_compression_ratio: int = 1,
        temporal_compression_ratio: int = 1,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        if spatial_compression_ratio < 1:
            raise ValueError(f"spatial_compression_ratio must be >= 1, got {spatial_compression_ratio}")
        if temporal_compression_ratio != 1:
            raise ValueError(
                "PixelSpaceAutoencoder never merges frames: temporal_compression_ratio must be 1"
            )
        # A frozen 1-element parameter gives the model a device/dtype (pipelines read next(vae.parameters())) and
        # a weights file; it takes no part in the computation.
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels * self.config.spatial_compression_ratio**2

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """(B, C, F, H, W) -> latent_dist over (B, C*s*s, F, H/s, W/s)."""
        b, c, f, h, w = x.shape
        s = self.config.spatial_compression_ratio
        if c != self.config.in_channels or h % s or w % s:
            raise ValueError(
                f"expected (B, {self.config.in_channels}, F, H, W) with H, W multiples of {s}, got {tuple(x.shape)}"
            )
        z = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        z = F.pixel_unshuffle(z, s) if s > 1 else z
        z = z.reshape(b, f, -1, h // s, w // s).permute(0, 2, 1, 3, 4)  # (B, C*s*s, F, H/s, W/s)
        dist = DeterministicLatentDistribution(z)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, **kwargs) -> DecoderOutput | tuple:
        """(B, C*s*s, F, h, w) -> (B, C, F, h*s, w*s)."""
        b, c, f, h, w = z.shape
        s = self.config.spatial_compression_ratio
        x = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = F.pixel_shuffle(x, s) if s > 1 else x
        x = x.reshape(b, f, -1, h * s, w * s).permute(0, 2, 1, 3, 4)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        return self.decode(self.encode(sample).latent_dist.mode(), return_dict=return_dict)


def shapes_vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens, then every shapes-world caption word."""
    return {word: i for i, word in enumerate((*SPECIAL_TOKENS, *CAPTION_WORDS))}


def build_tokenizer(model_max_length: int = 16) -> BertTokenizerFast:
    """A lower-casing word tokenizer over `shapes_vocabulary()` ([CLS] caption [SEP], padded with [PAD])."""
    return BertTokenizerFast(vocab=shapes_vocabulary(), do_lower_case=True, model_max_length=model_max_length)


class ShapesTextEncoder(ModelMixin, ConfigMixin):
    """A tiny transformer text encoder: token + position (+ phrase-index) embeddings, pre-norm encoder layers.

    The phrase index of a token is the number of separator tokens (`separator_ids`: "," and "and") before it,
    so every token of the k-th noun phrase of "a red circle, a blue square and a green triangle" carries the
    learned embedding of index k. Our choice: it makes "the colour of the k-th object named" a feature the
    transformer can match to mask slot k directly, where absolute positions alone left colours swapped
    between objects after CPU-minutes of training (measured).

    `forward(input_ids)` returns a `BaseModelOutput` whose [0] is (B, L', hidden_size) with L' = min(L,
    max_length): ids past `max_length` are cut (the tokenizer pads at the end, and captions are short), so a
    caller may pad to any length (the pipeline pads to its `max_sequence_length`, 226 by default).

    Args:
        vocab_size (`int`): tokens in the vocabulary.
        hidden_size (`int`, defaults to 64): embedding width (the transformer's `text_embed_dim`).
        num_layers (`int`, defaults to 1): encoder layers.
        num_heads (`int`, defaults to 2): attention heads.
        max_length (`int`, defaults to 16): positions (tokens kept).
        separator_ids (`list[int]`, *optional*): token ids that end a phrase; None: no phrase embeddings.
        max_phrases (`int`, defaults to 4): phrase indices embedded (later phrases share the last one).
    """

    @register_to_config
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        num_heads: int = 2,
        max_length: int = 16,
        separator_ids: list[int] | None = None,
        max_phrases: int = 4,
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(max_length, hidden_size)
        self.phrase_embedding = nn.Embedding(max_phrases, hidden_size) if separator_ids else None
        if separator_ids:
            self.register_buffer("separators", torch.tensor(list(separator_ids)), persistent=False)
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(
                    hidden_size,
                    num_heads,
                    2 * hidden_size,
                    dropout=0.0,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.token_embedding.weight, std=0.5)
        nn.init.normal_(self.position_embedding.weight, std=0.1)
        if self.phrase_embedding is not None:
            nn.init.normal_(self.phrase_embedding.weight, std=0.5)

    def phrase_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L): separators seen before each token (a separator belongs to the phrase it ends)."""
        is_separator = torch.isin(input_ids, self.separators).long()
        return (torch.cumsum(is_separator, dim=1) - is_separator).clamp(max=self.config.max_phrases - 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, return_dict: bool = True
    ):
        """(B, L) token ids -> hidden states (B, min(L, max_length), hidden_size)."""
        input_ids = input_ids[:, : self.config.max_length]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.token_embedding(input_ids) + self.position_embedding(positions)[None]  # (B, L, D)
        if self.phrase_embedding is not None:
            hidden = hidden + self.phrase_embedding(self.phrase_index(input_ids))
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.norm(hidden)
        return BaseModelOutput(last_hidden_state=hidden) if return_dict else (hidden,)


def build_text_encoder(
    hidden_size: int = 64, num_layers: int = 1, num_heads: int = 2, max_length: int = 16, phrases: bool = True
) -> ShapesTextEncoder:
    """A randomly initialised `ShapesTextEncoder` over `shapes_vocabulary()` (phrases split at "," and "and")."""
    vocab = shapes_vocabulary()
    separators = [vocab[","], vocab["and"]] if phrases else None
    return ShapesTextEncoder(len(vocab), hidden_size, num_layers, num_heads, max_length, separators)
