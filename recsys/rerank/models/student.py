"""The non-autoregressive (NAR) student, NAR4Rec-style (arXiv 2402.06871): every slot decoded in one forward.

    items, context = CandidateEncoder(batch)                          [B, n, d], [B, d]
    slot queries   = slot embedding(layout, k) + context               [B, m, d]
    blocks         : cross-attention of the slot queries to the valid candidates, MLP
    logits         = Pointer(slot queries, items): the position × candidate matching matrix  [B, m, n]

*Our* choice: no self-attention among the slot queries. Every slot query is a function of (slot, request)
alone, with or without it (the other slots' queries are functions of the same), so it would add parameters
but no information, and it costs a third of the slot stack, which is all a NAR decode adds to the encoder
(measured in `benchmarks/rerank_decoding.py`). No slot sees what another slot chose: the sequential part (no repeats, author caps) is left to the masked
decoding of `recsys.rerank.models.decoding`, and the dependencies between slots are what sequential knowledge
distillation from the AR teacher and list-wise RL teach the matrix. `step_logits(batch, orders)` is the matrix
broadcast over the K pages (it does not depend on the orders), so the same losses apply to teacher and student.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.data.pages import PageBatch
from recsys.rerank.models.config import RerankModelConfig
from recsys.rerank.models.encoder import CandidateEncoder
from recsys.rerank.models.layers import Block, Pointer, SlotEmbedding, key_padding_bias, layer_norm


class NARStudent(nn.Module):
    """Candidate encoder + m slot queries -> matching matrix in one forward (see the module docstring)."""

    decodes_autoregressively = False

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        self.config = config
        config = config.student  # its own depth (`student_layers`)
        self.encoder = CandidateEncoder(config)
        self.slot_embedding = SlotEmbedding(config)
        self.blocks = nn.ModuleList(
            Block(config, cross=True, self_attend=False) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.pointer = Pointer(config.d_model)

    def forward(self, batch: PageBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw logits [B, m, n], candidate encodings [B, n, d]); the encodings serve contrastive decoding."""
        items, context = self.encoder(batch)
        queries = self.slot_embedding(batch.layout, batch.num_slots) + context.unsqueeze(1)  # [B, m, d]
        memory_bias = key_padding_bias(batch.valid)
        for block in self.blocks:
            queries = block(queries, None, items, memory_bias)
        return self.pointer(layer_norm(self.norm, queries), items), items

    def logits(self, batch: PageBatch) -> torch.Tensor:
        """The position × candidate matching matrix (raw): [B, m, n]."""
        return self(batch)[0]

    def step_logits(self, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
        """The matrix for each of the K pages: orders [B, K, m] -> [B, K, m, n] (an expanded view)."""
        logits = self.logits(batch)
        return logits.unsqueeze(1).expand(-1, orders.shape[1], -1, -1)
