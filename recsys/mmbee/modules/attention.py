"""The attention layers MFQ is made of, and the masked pooling that GIE and SIM share.

Written on `F.scaled_dot_product_attention` rather than `nn.MultiheadAttention` so that the same code exports
with `torch.export` (no fast-path branches on the inputs) and runs the fused SDPA kernel on GPU.

- `MultiHeadAttention`: queries [B, Lq, d] attend to a context [B, Lk, d]; no masks (every segment token and
  every learnable query is real).
- `AttentionBlock`: one post-norm transformer layer, x <- LN(x + Attn(x, context)); x <- LN(x + FFN(x)).
  Self-attention is the block called with context = x.
- `masked_attention_pool`: softmax pooling of values under a key mask, with a caller-given vector for rows
  that have no valid key. Padding is excluded by a `torch.where` on the logits (weight exactly 0: any
  finite padded values give the same output) and an all-padding row returns the `empty` vector; no NaN,
  no data-dependent branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        head_dim = x.shape[-1] // self.num_heads
        q = self.q(x).unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)  # [B, h, Lq, dh]
        k, v = (
            self.kv(context).unflatten(-1, (2, self.num_heads, head_dim)).permute(2, 0, 3, 1, 4)
        )  # [B, h, Lk, dh]
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, h, Lq, dh]
        return self.out(attended.transpose(1, 2).flatten(2))  # [B, Lq, d]


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_mult: int = 2) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.attention(x, x if context is None else context))
        return self.norm2(x + self.ffn(x))


def masked_attention_pool(
    logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, empty: torch.Tensor
) -> torch.Tensor:
    """Σ_k softmax(logits)_k values_k over the keys where `mask` holds; `empty` [d] where none does.

    logits [..., K], values [..., K, d], mask [..., K] bool, empty broadcastable to [..., d] -> [..., d].
    """
    logits = torch.where(mask, logits, torch.finfo(logits.dtype).min)  # padding: weight exactly 0
    # softmax written out: for short lists (K of 10-20) it is ~5x faster than torch.softmax on CPU (measured
    # on torch 2.13, [800, 10]: 40 us vs 200 us); an all-padding row is uniform here and replaced below
    weights = (logits - logits.amax(dim=-1, keepdim=True)).exp()  # [..., K]
    weights = weights / weights.sum(dim=-1, keepdim=True)
    pooled = torch.einsum("...k,...kd->...d", weights, values)  # [..., d]
    return torch.where(mask.any(dim=-1, keepdim=True), pooled, empty)
