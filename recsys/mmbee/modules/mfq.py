"""MFQ: multimodal fusion with a learnable per-streamer query (MMBee, KDD 2024, arXiv 2407.00056, Sec. 3.2).

Input: the current segment's token sequences, a subset of visual X_v, speech X_s and comments X_t
([B, L, D] each, `GTRBatch.visual/speech/comments`), and the streamer index [B]. Output: h_m [B, d], the
streamer's live content summarised by queries that belong to that streamer.

1. **Projection.** Each modality has its own linear map D -> d (the encoders' spaces differ).
2. **Orthogonal completion** (parameter-free), per token position l, with o the sum of the *other* modalities:

       o_m = Σ_{n≠m} X_n,    Y_m = X_m + o_m − (⟨o_m, X_m⟩ / (‖X_m‖² + ε)) X_m

   i.e. X_m plus the part of the other modalities that X_m does not already carry (⟨Y_m − X_m, X_m⟩ = 0 up
   to ε). Our choice where the paper is terse: the projection is per token (the three streams of a segment
   are time-aligned token by token), on the projected d-dim tokens, and the others are summed, not averaged
   (their sum keeps the complementary information of each). With one modality o_m = 0 and Y_m = X_m.
3. **Intra-modality cross-attention** h_m = CrossAttention(query = X_m, key/value = Y_m), one block per
   modality; then a learned modality-type embedding is added (our choice: the self-attention below sees
   which stream a token came from).
4. **Inter-modality self-attention** over the concatenated sequence h_f = SelfAttention(h_v ⊕ h_s ⊕ h_t)
   [B, M·L, d].
5. **Learnable queries.** N query vectors per streamer, an embedding table [num_authors + 1, N, d] indexed by
   the streamer (row 0 is the unknown streamer's, the cold-start path), cross-attend h_f, then self-attend;
   the mean over the N queries is h_m. With `use_queries=False` (the paper's "w/o q_m" ablation) h_m is the
   mean of h_f over its tokens instead, and the table does not exist.

Modalities left out of `modalities` are dropped (their projection and attention block do not exist and the
sequence is shorter), never zero-filled. Every block is one post-norm transformer layer (`AttentionBlock`).

Cost: MFQ attends over every token of every candidate's segment, so it is the expensive part of MMBee: about
50 us of one CPU thread per candidate at the defaults with 10 tokens per modality, 5-13x the small SIM/MMoE
backbones of this project (`benchmarks/mmbee_model_latency.py`). h_m depends on the streamer and its
segment only, not on the viewer: a server computes it once per (streamer, segment) and shares it across
viewers (`MMBeeModel.fusion`, `MMBeeModel.forward(batch, h_m)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recsys.mmbee.modules.attention import AttentionBlock

MODALITIES = ("visual", "speech", "comments")
"""The segment token fields of `GTRBatch` MFQ can fuse: X_v, X_s, X_t."""


def orthogonal_complete(x: torch.Tensor, others: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Y = x + (others − proj_x(others)): x completed by the component of `others` orthogonal to x.

    x, others [..., d] -> [..., d]; the projection is over the last dimension (one per token).
    """
    coefficient = (others * x).sum(-1, keepdim=True) / (x.square().sum(-1, keepdim=True) + eps)  # [..., 1]
    return x + others - coefficient * x


class MFQ(nn.Module):
    def __init__(
        self,
        *,
        num_authors: int,
        content_dim: int,
        dim: int = 32,
        num_heads: int = 2,
        num_queries: int = 4,
        modalities: Sequence[str] = MODALITIES,
        use_queries: bool = True,
    ) -> None:
        super().__init__()
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be distinct names among {MODALITIES}, got {tuple(modalities)}")
        self.modalities = tuple(modalities)
        self.dim = dim
        self.num_queries = num_queries
        self.projections = nn.ModuleList(nn.Linear(content_dim, dim) for _ in self.modalities)
        self.intra = nn.ModuleList(AttentionBlock(dim, num_heads) for _ in self.modalities)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.inter = AttentionBlock(dim, num_heads)
        self.queries: nn.Embedding | None = None
        if use_queries:
            self.queries = nn.Embedding(num_authors + 1, num_queries * dim)
            nn.init.normal_(self.queries.weight, std=0.02)
            self.query_cross = AttentionBlock(dim, num_heads)
            self.query_self = AttentionBlock(dim, num_heads)

    def forward(self, authors: torch.Tensor, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """authors [B] long; tokens: one [B, L, D] tensor per `self.modalities` entry, in order -> [B, d]."""
        if len(tokens) != len(self.modalities):
            raise ValueError(
                f"expected {len(self.modalities)} token tensors ({self.modalities}), got {len(tokens)}"
            )
        xs = [projection(t) for projection, t in zip(self.projections, tokens, strict=True)]  # M x [B, L, d]
        total = torch.stack(xs).sum(0)  # [B, L, d]
        fused = []
        for m, (x, block) in enumerate(zip(xs, self.intra, strict=True)):
            y = orthogonal_complete(x, total - x)  # [B, L, d]
            fused.append(block(x, y) + self.modality_embedding[m])  # [B, L, d]
        h_f = self.inter(torch.cat(fused, dim=1))  # [B, M*L, d]
        if self.queries is None:
            return h_f.mean(dim=1)  # [B, d]
        q = self.queries(authors).unflatten(-1, (self.num_queries, self.dim))  # [B, N, d]
        q = self.query_self(self.query_cross(q, h_f))  # [B, N, d]
        return q.mean(dim=1)  # [B, d]
