"""The building blocks every rerank model shares: attention with an additive bias, a pre-norm transformer
block, layout-aware slot embeddings and the pointer (slot query · candidate key) head.

Masks are additive biases with a large negative *finite* value (`MASKED`) rather than -inf, so that a query
whose keys are all masked (a padding token) averages harmlessly instead of producing NaN; such rows are never
read. Attention runs through `F.scaled_dot_product_attention` (one fused kernel on CPU and GPU).

Written for batch-1 latency (a request of 50 candidates is a few dozen small kernels, where Python and dispatch
overhead rival the arithmetic): inside a block, submodules' weights go to `F.linear` / `F.layer_norm` directly
instead of through module calls, heads are strided views of one projection rather than reshaped copies, and
helpers build masks in as few ops as they can. The modules (and so the saved weights) are unchanged;
`layers_test.py` holds the plain reading these forwards replaced and checks they agree within 1e-6.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.pages import LAYOUTS
from recsys.rerank.models.config import RerankModelConfig

MASKED = -1e9
"""Additive attention bias of a blocked key (finite: fully blocked rows stay NaN-free)."""


def key_padding_bias(keep: torch.Tensor) -> torch.Tensor:
    """Additive bias that blocks the keys where `keep` is False: bool [B, Lk] -> float [B, 1, 1, Lk]."""
    return torch.where(keep, 0.0, MASKED).to(torch.float32)[:, None, None]


def same_author(authors: torch.Tensor) -> torch.Tensor:
    """1.0 where two different positions hold items by the same known author: long [..., L] -> float [..., L, L]."""
    same = (authors.unsqueeze(-1) == authors.unsqueeze(-2)) & (authors >= 0).unsqueeze(-1)
    same.diagonal(dim1=-2, dim2=-1).fill_(False)  # a position is not its own duplicate
    return same.to(torch.float32)


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` without the module call."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class Attention(nn.Module):
    """Multi-head attention of `x` [B, Lq, d] over `memory` [B, Lk, d] plus an additive bias broadcastable to
    [B, heads, Lq, Lk]."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)  # query, key, value projections in one matrix
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        bias: torch.Tensor | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`memory_kv`: `self.memory_kv(memory)` computed earlier, for a memory attended to many times."""
        batch, queries, width = x.shape
        if memory is x:  # self-attention: one matrix product for q, k and v
            q, k, v = self._heads(
                F.linear(x, self.in_proj.weight, self.in_proj.bias), 3
            )  # [B, h, L, dh] each
        else:
            weight, offset = self.in_proj.weight, self.in_proj.bias
            (q,) = self._heads(F.linear(x, weight[:width], offset[:width]), 1)  # [B, h, Lq, dh]
            k, v = memory_kv if memory_kv is not None else self.memory_kv(memory)
        mixed = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )  # [B, h, Lq, dh]
        return F.linear(mixed.transpose(1, 2).reshape(batch, queries, width), self.out.weight, self.out.bias)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key and value heads of a memory [B, Lk, d] -> ([B, h, Lk, dh], [B, h, Lk, dh]) (strided views)."""
        width = memory.shape[-1]
        return self._heads(F.linear(memory, self.in_proj.weight[width:], self.in_proj.bias[width:]), 2)

    def _heads(self, projected: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """[B, L, parts * d] -> `parts` views [B, h, L, dh] (strided: no copies)."""
        batch, length, _ = projected.shape
        return projected.view(batch, length, parts, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


class Block(nn.Module):
    """Pre-norm transformer block: self-attention (unless `self_attend` is False), then (with `cross`)
    attention to a memory, then an MLP."""

    def __init__(self, config: RerankModelConfig, cross: bool = False, self_attend: bool = True) -> None:
        super().__init__()
        d = config.d_model
        self.self_norm = nn.LayerNorm(d) if self_attend else None
        self.self_attention = Attention(d, config.heads, config.dropout) if self_attend else None
        self.cross_norm = nn.LayerNorm(d) if cross else None
        self.cross_attention = Attention(d, config.heads, config.dropout) if cross else None
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(config.dropout)
        )

    def forward(
        self,
        x: torch.Tensor,
        self_bias: torch.Tensor | None,
        memory: torch.Tensor | None = None,
        memory_bias: torch.Tensor | None = None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`memory_kv`: `self.cross_attention.memory_kv(memory)` computed earlier (see `Attention.forward`)."""
        if self.self_attention is not None:
            normed = layer_norm(self.self_norm, x)
            x = x + self.self_attention(normed, normed, self_bias)
        if self.cross_attention is not None:
            x = x + self.cross_attention(layer_norm(self.cross_norm, x), memory, memory_bias, memory_kv)
        inner, _, outer, dropout = self.mlp  # called as functions: a module call costs more than a small op
        hidden = F.linear(
            F.gelu(F.linear(layer_norm(self.mlp_norm, x), inner.weight, inner.bias)), outer.weight, outer.bias
        )
        return x + (dropout(hidden) if self.training else hidden)


class SlotEmbedding(nn.Module):
    """One learned vector per (layout, slot): slot 3 of the grid (row 1, right column) and slot 3 of a single
    column are different places on screen, so they get different embeddings (*our* choice)."""

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        self.max_slots = config.max_slots
        self.table = nn.Embedding(len(LAYOUTS) * config.max_slots, config.d_model)

    def forward(self, layout: torch.Tensor, num_slots: int) -> torch.Tensor:
        """layout long [B] -> [B, m, d]."""
        if not 1 <= num_slots <= self.max_slots:
            raise ValueError(f"num_slots {num_slots} is outside 1..{self.max_slots} (the config's max_slots)")
        by_layout = self.table.weight.view(len(LAYOUTS), self.max_slots, -1)  # row layout * max_slots + slot
        return by_layout[layout, :num_slots]


class Pointer(nn.Module):
    """Pointer logits: scaled dot product of each slot query with each candidate's key: [B, m, d] x [B, n, d]
    -> [B, m, n]."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        query = F.linear(queries, self.query.weight, self.query.bias)
        key = F.linear(items, self.key.weight, self.key.bias)
        return self.scale * query @ key.transpose(-1, -2)
