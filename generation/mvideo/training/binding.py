"""The binding loss: teach mask slot k to read the k-th phrase of the caption (an attention-grounding loss).

Mask slot k is "the k-th object the caption names" (generation/mvideo/models/mask_encoder.py). Nothing but the
transformer's attention can connect the two, and in CPU-minutes of training it did not: the shapes-world model
drew the caption's colours, but on the wrong objects (measured: colours of two- and three-object scenes
swapped at chance level after 2,000 steps). Layout-conditioned diffusion models meet the same problem and
supervise cross-attention maps with the layout; we do the same, as a training-only auxiliary loss:

    L_bind = mean over layers l, the first `heads` heads h, and video tokens n covered by slot k (kept text and mask)
             of  -log sum_{j in phrase k} softmax_j(q_{l,h,n} . k_{l,h,j} / sqrt(d))      (softmax over text tokens)

q are the video tokens' queries (after QK norm and rotary embedding, as the attention computes them), k the
text tokens' keys; a token belongs to slot k when at least `min_coverage` of its patch is slot k's mask; phrase k
is the tokens after the (k-1)-th separator ("," or "and") and up to the k-th, special tokens excluded. The loss
shapes where one head per layer looks; what the model draws from it is still learned by the diffusion loss.
`BindingAttnProcessor` is CogVideoX's attention processor (same maths) that also records these terms while a
target is set; exported models get the plain processor back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0

from generation.mvideo.models.transformer_mvideo import (
    cogvideox_attention_inputs,
    cogvideox_attention_outputs,
)


@dataclass
class BindingTargets:
    """Per-batch targets: `token_slot` (B, N) slot of each video token or -1; `phrase_mask` (B, K, L) bool."""

    token_slot: torch.Tensor
    phrase_mask: torch.Tensor


@dataclass
class BindingRecorder:
    """Shared by the processors of one model: targets in, loss terms out."""

    heads: int = 1
    targets: BindingTargets | None = None
    terms: list[torch.Tensor] = field(default_factory=list)

    def take_loss(self) -> torch.Tensor | None:
        """The mean of the recorded terms (None if none), clearing them."""
        if not self.terms:
            return None
        loss = torch.stack(self.terms).mean()
        self.terms = []
        return loss


class BindingAttnProcessor(CogVideoXAttnProcessor2_0):
    """`CogVideoXAttnProcessor2_0` plus the binding-loss term of its layer when `recorder.targets` is set."""

    def __init__(self, recorder: BindingRecorder):
        super().__init__()
        self.recorder = recorder

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        query, key, value, text_len = cogvideox_attention_inputs(
            attn, hidden_states, encoder_hidden_states, image_rotary_emb
        )
        batch_size = query.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, query.shape[2], batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if self.recorder.targets is not None:
            h = self.recorder.heads
            term = binding_term(query[:, :h, text_len:], key[:, :h, :text_len], self.recorder.targets)
            if term is not None:
                self.recorder.terms.append(term)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = hidden_states.transpose(1, 2).flatten(2)  # (B, S, heads * d)
        return cogvideox_attention_outputs(attn, hidden_states, text_len)


def binding_term(query: torch.Tensor, key: torch.Tensor, targets: BindingTargets) -> torch.Tensor | None:
    """L_bind of one layer: query (B, h, N, d) of video tokens, key (B, h, L, d) of text tokens."""
    slot = targets.token_slot  # (B, N)
    covered = slot >= 0
    if not bool(covered.any()):
        return None
    logits = torch.einsum("bhnd,bhld->bhnl", query.float(), key.float()) / query.shape[-1] ** 0.5
    log_p = logits.log_softmax(dim=-1)  # over text tokens
    phrase = targets.phrase_mask[torch.arange(slot.shape[0])[:, None], slot.clamp(min=0)]  # (B, N, L)
    hit = log_p.masked_fill(~phrase[:, None], -1e4).logsumexp(dim=-1)  # (B, h, N); finite: no NaN gradients
    valid = covered & phrase.any(dim=-1)  # (B, N)
    if not bool(valid.any()):
        return None
    return -hit.permute(0, 2, 1)[valid].mean()


def token_slots(
    mask_video: torch.Tensor,
    keep: torch.Tensor,
    patch: int,
    patch_t: int,
    spatial: int,
    min_coverage: float = 0.5,
) -> torch.Tensor:
    """(B, N) slot index of each video token (-1: no slot covers `min_coverage` of it, or the mask is dropped).

    mask_video: (B, T, K, H, W); tokens follow CogVideoX's order (frame group, row, column); `spatial` is the
    VAE's spatial compression (a token covers patch * spatial pixels square and patch_t frames).
    """
    b, t, k, h, w = mask_video.shape
    size = patch * spatial
    pad_t = (-t) % patch_t
    x = mask_video.float().permute(0, 2, 1, 3, 4)  # (B, K, T, H, W)
    if pad_t:
        x = torch.cat([x[:, :, :1].expand(-1, -1, pad_t, -1, -1), x], dim=2)
    coverage = F.avg_pool3d(x, (patch_t, size, size))  # (B, K, T', H', W')
    best, slot = coverage.max(dim=1)  # (B, T', H', W')
    slot = torch.where(best >= min_coverage, slot, torch.full_like(slot, -1))
    slot = slot.flatten(1)  # (B, N)
    return torch.where(keep.view(-1, 1), slot, torch.full_like(slot, -1))


def phrase_masks(
    input_ids: torch.Tensor, separator_ids: Sequence[int], special_ids: Sequence[int], slots: int
) -> torch.Tensor:
    """(B, K, L) bool: the tokens of the k-th phrase of each caption (phrases end at separators)."""
    ids = input_ids
    is_sep = torch.isin(ids, torch.tensor(list(separator_ids), device=ids.device))
    index = torch.cumsum(is_sep.long(), dim=1) - is_sep.long()  # (B, L)
    content = ~is_sep & ~torch.isin(ids, torch.tensor(list(special_ids), device=ids.device))
    ks = torch.arange(slots, device=ids.device).view(1, -1, 1)
    return (index[:, None, :] == ks) & content[:, None, :]


def install(transformer: torch.nn.Module, heads: int) -> BindingRecorder:
    """Put `BindingAttnProcessor`s (sharing one recorder) into every attention layer of the transformer."""
    recorder = BindingRecorder(heads=heads)
    transformer.set_attn_processor(BindingAttnProcessor(recorder))
    return recorder


def uninstall(transformer: torch.nn.Module) -> None:
    """Back to CogVideoX's plain processor."""
    transformer.set_attn_processor(CogVideoXAttnProcessor2_0())
