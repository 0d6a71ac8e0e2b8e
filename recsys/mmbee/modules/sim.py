"""SIM backbone (Pi et al., CIKM 2020) as MMBee's base ranker: search the long behaviour sequence for what is
related to the candidate, attend over what was found, and score with an MLP over-arch.

- **Search** (*our* choice among SIM's hard/soft searches: soft search, i.e. by embedding). The candidate
  representation [B, c] is mapped to a key q [B, d]; each behaviour's key (`BehaviourEncoder`: streamer id
  embedding + projected content) is scored s_i = ⟨key_i, q⟩ / √d; the top-k by `torch.topk` are kept
  (k = min(top_k, H), a static number, so the graph exports). Padding is scored with the dtype's minimum, so
  a real behaviour is never passed over for padding; when a viewer has fewer than k behaviours some padding
  is kept and masked out below. The selection itself has no gradient; the search projections learn through
  the kept items' scores s_i, which are added to the attention logits (so retrieval and attention agree).
- **Target attention** over the kept behaviours, DIN-style: an MLP on [q, key, q − key, q ⊙ key] gives a
  logit per item (+ s_i), softmax over the valid kept items, weighted sum of the behaviour values ->
  interest [B, d]. A viewer with no history gets a learned "empty interest" vector.
- `OverArch`: MLP with ReLU over the concatenated features, then a linear head to one logit per task, so
  the model's output is [B, T] whatever the backbone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recsys.mmbee.modules.attention import masked_attention_pool


class SIM(nn.Module):
    def __init__(self, *, query_dim: int, dim: int, top_k: int = 16, attention_hidden: int = 32) -> None:
        super().__init__()
        self.dim = dim
        self.top_k = top_k
        self.query = nn.Linear(query_dim, dim)
        self.attention = nn.Sequential(
            nn.Linear(4 * dim, attention_hidden), nn.ReLU(), nn.Linear(attention_hidden, 1)
        )
        self.empty = nn.Parameter(torch.zeros(dim))

    def forward(
        self, candidate: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """candidate [B, c], keys/values [B, H, d], mask [B, H] bool -> interest [B, d]."""
        q = self.query(candidate)  # [B, d]
        scores = torch.einsum("bhd,bd->bh", keys, q) / math.sqrt(self.dim)  # [B, H]
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        kept_scores, index = scores.topk(min(self.top_k, keys.shape[1]), dim=1)  # [B, k]
        kept_mask = mask.gather(1, index)  # [B, k]
        gather_index = index.unsqueeze(-1).expand(-1, -1, keys.shape[-1])  # [B, k, d]
        kept_keys = keys.gather(1, gather_index)  # [B, k, d]
        kept_values = values.gather(1, gather_index)  # [B, k, d]
        qk = q.unsqueeze(1).expand_as(kept_keys)  # [B, k, d]
        features = torch.cat([qk, kept_keys, qk - kept_keys, qk * kept_keys], dim=-1)  # [B, k, 4d]
        logits = self.attention(features).squeeze(-1) + torch.where(kept_mask, kept_scores, 0.0)  # [B, k]
        return masked_attention_pool(logits, kept_values, kept_mask, self.empty)


class OverArch(nn.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(in_dim, num_tasks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, F] -> logits [B, T]."""
        return self.head(self.mlp(features))
