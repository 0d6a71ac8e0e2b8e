"""The autoregressive (AR) teacher: candidate encoder + a pointer decoder over the prefix (Dual-Rerank's
teacher; a pointer network in the style of PRS/Seq2Slate).

    items, context = CandidateEncoder(batch)                         [B, n, d], [B, d]
    token k  = slot embedding(layout, k) + context + (start if k = 0 else items[order[k-1]])
    decoder  : causal self-attention over the tokens (slot k sees the items placed at slots < k),
               cross-attention to all valid candidates, MLP                         [R, k+1, d]
    logits   = Pointer(token k, items): scaled dot product with each candidate      [R, n]

Slot k's query thus conditions on the slot (and layout), the request and everything placed before it. Logits
are raw: availability (padding, placed items, author caps) is applied by `recsys.rerank.models.decoding`.

Two ways to run it, which agree (tested):
- teacher forcing, `step_logits(batch, orders [B, K, m]) -> [B, K, m, n]`: one decoder pass over m tokens per
  page (row k conditions on orders[..., :k]); what training and the log-probs of a given page use.
- incremental, `start(batch) -> TeacherState` (encodes the candidates once) then
  `next_logits(state, placed [R, k]) -> [R, n]` per slot; `state.repeat(K)` decodes K pages per request in
  parallel. *Our* choice: each step recomputes the decoder over the k+1 prefix tokens (no key/value cache for
  the prefix: m <= 20 tokens of width d cost less than the cache bookkeeping); what does not change between
  steps is computed once per state: the candidates' encoding and, on the first step, each block's cross-attention
  keys and values of the candidates (`TeacherState.memory_kv`; the same operation on the same tensor, so the
  logits are bit for bit those of recomputing them, which keeps training runs reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from recsys.data.pages import PageBatch
from recsys.rerank.models.config import RerankModelConfig
from recsys.rerank.models.encoder import CandidateEncoder
from recsys.rerank.models.layers import MASKED, Block, Pointer, SlotEmbedding, key_padding_bias, layer_norm


@dataclass
class TeacherState:
    """A request's encoding for incremental decoding (rows R: requests, or requests × pages after `repeat`)."""

    items: torch.Tensor  # [R, n, d]
    context: torch.Tensor  # [R, d]
    slots: torch.Tensor  # [R, m, d] slot embeddings of the request's layout
    memory_bias: torch.Tensor  # [R, 1, 1, n] blocks padding in the cross-attention
    memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)
    """Each decoder block's cross-attention keys and values of `items`, filled by the first decoder pass."""

    def repeat(self, times: int) -> TeacherState:
        """Each row `times` times in a row (request b's copies at rows b*times ... b*times + times - 1)."""
        return TeacherState(
            *(
                tensor.repeat_interleave(times, dim=0)
                for tensor in (self.items, self.context, self.slots, self.memory_bias)
            )
        )


class PrefixDecoder(nn.Module):
    """Causal transformer over the slot tokens, cross-attending to the candidates: hidden [R, t+1, d] for
    slots 0..t given the items placed at slots 0..t-1 (`prefix` long [R, t])."""

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(config.d_model))
        self.blocks = nn.ModuleList(Block(config, cross=True) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        causal = torch.full((config.max_slots, config.max_slots), MASKED).triu(1)  # slot k sees slots <= k
        self.register_buffer("causal", causal, persistent=False)  # built once, not saved

    def forward(self, state: TeacherState, prefix: torch.Tensor) -> torch.Tensor:
        rows, placed = prefix.shape
        width = state.items.shape[-1]
        index = prefix.unsqueeze(-1).expand(rows, placed, width)
        previous = torch.cat([self.start.expand(rows, 1, width), state.items.gather(1, index)], dim=1)
        x = previous + state.slots[:, : placed + 1] + state.context.unsqueeze(1)  # [R, t+1, d]
        causal = self.causal[: placed + 1, : placed + 1]
        if state.memory_kv is None:  # the candidates do not change between steps: project them once
            state.memory_kv = [block.cross_attention.memory_kv(state.items) for block in self.blocks]
        for block, memory_kv in zip(self.blocks, state.memory_kv, strict=True):
            x = block(x, causal, state.items, state.memory_bias, memory_kv)
        return layer_norm(self.norm, x)


class ARTeacher(nn.Module):
    """Candidate encoder + pointer decoder over the prefix (see the module docstring)."""

    decodes_autoregressively = True

    def __init__(self, config: RerankModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = CandidateEncoder(config)
        self.slot_embedding = SlotEmbedding(config)
        self.decoder = PrefixDecoder(config)
        self.pointer = Pointer(config.d_model)

    def start(self, batch: PageBatch) -> TeacherState:
        """Encode the candidates once per request."""
        items, context = self.encoder(batch)
        return TeacherState(
            items, context, self.slot_embedding(batch.layout, batch.num_slots), key_padding_bias(batch.valid)
        )

    def next_logits(self, state: TeacherState, placed: torch.Tensor) -> torch.Tensor:
        """Raw pointer logits of the next slot k given the items placed at slots < k: placed long [R, k] ->
        [R, n]."""
        hidden = self.decoder(state, placed)[:, -1:]  # [R, 1, d]
        return self.pointer(hidden, state.items).squeeze(1)

    def step_logits(self, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: raw logits of every slot of every page, row k conditioned on orders[..., :k]:
        orders long [B, K, m] -> [B, K, m, n]."""
        size, pages, slots = orders.shape
        state = self.start(batch).repeat(pages)
        hidden = self.decoder(state, orders.reshape(size * pages, slots)[:, :-1])  # [B*K, m, d]
        return self.pointer(hidden, state.items).view(size, pages, slots, -1)

    def forward(self, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
        return self.step_logits(batch, orders)
