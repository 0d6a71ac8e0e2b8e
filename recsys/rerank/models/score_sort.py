"""Score-and-sort, the baseline: every slot's logit is the candidate's options-weighted upstream score.

Masked greedy decoding of these logits is the sort by score that keeps the author caps (the best remaining
candidate at each slot); sampling from them is a Plackett-Luce draw around that sort. It has no parameters and
ignores everything a page adds (position bias, neighbours, diversity): what the generative rerankers must beat.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.data.pages import PageBatch
from recsys.rerank.models.encoder import weighted_scores


class ScoreAndSort(nn.Module):
    """Options-weighted upstream score as every slot's logit (no parameters)."""

    decodes_autoregressively = False

    def logits(self, batch: PageBatch) -> torch.Tensor:
        """The same scores at every slot: [B, m, n]."""
        return weighted_scores(batch).unsqueeze(1).expand(-1, batch.num_slots, -1)

    def step_logits(self, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
        """orders [B, K, m] -> [B, K, m, n]."""
        return self.logits(batch).unsqueeze(1).expand(-1, orders.shape[1], -1, -1)

    def forward(self, batch: PageBatch) -> torch.Tensor:
        return self.logits(batch)
