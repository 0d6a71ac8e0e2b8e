"""The viewer's behaviour sequence as vectors, shared by both backbones (SIM searches it, MMoE averages it).

Behaviour i (a past impression: streamer a_i, segment content c_i [D], actions u_i [A]) becomes

    key_i   = E_author[a_i] + W_c c_i          what the behaviour was about (searched against the candidate)
    value_i = key_i + W_u u_i                  ... and what the viewer did then (what the attention returns)

E_author is the model's streamer id table (shared with the candidate's id embedding, as in DIN), so the
caller passes the looked-up rows. Our choice: keys carry no actions, so the search asks "which past streams
were like this one" and the actions only weigh in once a behaviour is retrieved.
"""

from __future__ import annotations

import torch
from torch import nn


class BehaviourEncoder(nn.Module):
    def __init__(self, *, content_dim: int, num_actions: int, dim: int) -> None:
        super().__init__()
        self.content = nn.Linear(content_dim, dim)
        self.actions = nn.Linear(num_actions, dim)

    def forward(
        self, author_embeddings: torch.Tensor, content: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """author_embeddings [B, H, d], content [B, H, D], actions [B, H, A] -> keys, values [B, H, d]."""
        keys = author_embeddings + self.content(content)  # [B, H, d]
        return keys, keys + self.actions(actions)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, H, d] where mask [B, H] holds -> [B, d]; zeros for an empty row."""
    weights = mask.to(values.dtype).unsqueeze(-1)  # [B, H, 1]
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)
