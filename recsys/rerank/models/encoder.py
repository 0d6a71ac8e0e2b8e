"""The candidate encoder every reranker shares: a transformer over the unordered candidate set.

    tokens   = Linear([features, weighted score]) + condition          [B, n, d]
    condition = Linear(options) + layout embedding                     [B, d]   (added to every token)
    blocks   : self-attention among the valid candidates, with a same-author bias
    items    = LayerNorm(tokens), zero at padding                     [B, n, d]
    context  = MLP([masked mean of items, condition])                  [B, d]

No candidate-position embedding: the set is unordered (the upstream ranking survives only as the upstream
scores, which are features). *Our* choices where the issue is silent:

- Each token also reads the options-weighted upstream score (`weighted_scores`, the score-and-sort key): a
  product of two inputs is hard for a small MLP to form, and every reranker should at least know the baseline's
  order under the request's own weights.
- Same-author relation: in every layer, each head adds a learned scalar × [same known author, different
  position] to its attention logits (zero-initialised, so an untrained encoder ignores authors), which lets the
  models see author duplicates (per-author caps, fatigue) without an author-id vocabulary.
- Padding (valid=False) is blocked as a key everywhere and its output rows are zero; the context pools valid
  items only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.pages import FEATURES, LAYOUTS, OPTIONS, PageBatch, weighted_scores
from recsys.rerank.models.config import RerankModelConfig
from recsys.rerank.models.layers import Block, key_padding_bias, layer_norm, same_author

ITEM_INPUTS = len(FEATURES) + 1
"""Per-candidate input width: the features, then the options-weighted upstream score."""


def item_inputs(batch: PageBatch) -> torch.Tensor:
    """What a model reads of each candidate: [features, weighted score]: float [B, n, ITEM_INPUTS]."""
    return torch.cat([batch.features, weighted_scores(batch).unsqueeze(-1)], dim=-1)


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the kept rows: [B, n, d], bool [B, n] -> [B, d] (zero when nothing is kept)."""
    weights = keep.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class Condition(nn.Module):
    """What the request asks for, as one vector: Linear(options) + layout embedding: [B, d]."""

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        self.options = nn.Linear(len(OPTIONS), config.d_model)
        self.layout = nn.Embedding(len(LAYOUTS), config.d_model)

    def forward(self, batch: PageBatch) -> torch.Tensor:
        return F.linear(batch.options, self.options.weight, self.options.bias) + F.embedding(
            batch.layout, self.layout.weight
        )


class CandidateEncoder(nn.Module):
    """`forward(batch) -> (items [B, n, d], context [B, d])` (see the module docstring)."""

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.heads = config.heads
        self.item_in = nn.Linear(ITEM_INPUTS, d)
        self.condition = Condition(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.same_author_bias = nn.Parameter(torch.zeros(config.layers, config.heads))
        self.norm = nn.LayerNorm(d)
        self.context = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, batch: PageBatch) -> tuple[torch.Tensor, torch.Tensor]:
        condition = self.condition(batch)  # [B, d]
        tokens = F.linear(item_inputs(batch), self.item_in.weight, self.item_in.bias)  # [B, n, d]
        x = tokens + condition.unsqueeze(1)
        padding = key_padding_bias(batch.valid).unsqueeze(0)  # [1, B, 1, 1, n]
        duplicates = same_author(batch.authors)[None, :, None]  # [1, B, 1, n, n]
        layers, heads = self.same_author_bias.shape
        per_head = self.same_author_bias.view(layers, 1, heads, 1, 1)
        biases = padding + per_head * duplicates  # [layers, B, h, n, n]: every layer's in two ops
        for block, bias in zip(self.blocks, biases, strict=True):
            x = block(x, bias)
        keep = batch.valid.unsqueeze(-1).to(x.dtype)  # [B, n, 1]
        items = layer_norm(self.norm, x) * keep  # [B, n, d], zero at padding
        # masked_mean(items, valid) without its second masking: items are already 0 at padding
        pooled = items.sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)  # [B, d]
        inner, _, outer = self.context  # called as functions: a module call costs more than a small op
        hidden = F.gelu(F.linear(torch.cat([pooled, condition], dim=-1), inner.weight, inner.bias))
        return items, F.linear(hidden, outer.weight, outer.bias)
