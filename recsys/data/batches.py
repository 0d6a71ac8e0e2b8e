"""The batch every MMBee model, train wrapper and scorer reads: one row per (user, live stream) impression.

Ids are *indices*: 0 means unknown (a cold-start user or streamer, or padding in a list), known ids are
1..N in the order of the vocabulary that built the batch (`recsys.data.vocab`). A model therefore always has
a learned "unknown" row, which is the documented cold-start path: an unknown user or streamer is scored from
its default id embedding plus its content and graph features, never refused.

Shapes (B: batch, L: segment tokens per modality, D: content dim, H: behaviour sequence, K: neighbours):

    users            long  [B]        viewer index
    authors          long  [B]        streamer index (the key of MFQ's learnable queries)
    user_dense       float [B, FU]    viewer statistics (log impressions, log gifts, ...), `USER_DENSE`
    author_dense     float [B, FA]    streamer statistics, `AUTHOR_DENSE`
    visual           float [B, L, D]  frame tokens X_v of the current segment (the last L seconds)
    speech           float [B, L, D]  ASR tokens X_s
    comments         float [B, L, D]  comment tokens X_t
    history_authors  long  [B, H]     streamers of the viewer's past impressions, most recent first (0: padding)
    history_content  float [B, H, D]  what the viewer saw then (mean frame token of that segment)
    history_actions  float [B, H, A]  what the viewer did then: `HISTORY_ACTIONS`
    neighbours       dict metapath -> long [B, K]: `METAPATHS` (users for u2a2u, streamers otherwise; 0: padding)
    labels           float [B, T]     `TASKS`, task 0 is the gift (the GTR label)

`history_mask` and the neighbour masks are derived (`index > 0`), so they cannot disagree with the indices.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

TASKS = ("gift", "like", "comment")
"""Label columns; the GTR head is task 0. MMoE learns all three, SIM only the first."""
HISTORY_ACTIONS = ("log_watch_seconds", "liked", "gifted")
USER_DENSE = ("log_impressions", "log_gifts", "gift_rate")
AUTHOR_DENSE = ("log_impressions", "log_gifts", "gift_rate")
USER_METAPATHS = ("u2a2u", "u2a2u2a", "u2a2a")
"""Expansions of the viewer: similar users, their streamers (minus those already gifted), similar streamers."""
AUTHOR_METAPATHS = ("a2a", "a2u2a")
"""Expansions of the candidate streamer: Swing-similar streamers, streamers sharing its gifters."""
METAPATHS = USER_METAPATHS + AUTHOR_METAPATHS
METAPATH_TARGET = {
    "u2a2u": "user",
    "u2a2u2a": "author",
    "u2a2a": "author",
    "a2a": "author",
    "a2u2a": "author",
}
"""Which id space each metapath's neighbour indices live in."""
METAPATH_SOURCE = {name: "user" if name in USER_METAPATHS else "author" for name in METAPATHS}
"""Whose neighbours each metapath lists: the viewer's or the candidate streamer's."""


@dataclass
class GTRBatch:
    users: torch.Tensor
    authors: torch.Tensor
    user_dense: torch.Tensor
    author_dense: torch.Tensor
    visual: torch.Tensor
    speech: torch.Tensor
    comments: torch.Tensor
    history_authors: torch.Tensor
    history_content: torch.Tensor
    history_actions: torch.Tensor
    neighbours: dict[str, torch.Tensor]
    labels: torch.Tensor

    @property
    def history_mask(self) -> torch.Tensor:
        return self.history_authors > 0

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> GTRBatch:
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> GTRBatch:
        """Called by DataLoader(pin_memory=True) for custom batch types."""
        return self._map(lambda tensor: tensor.pin_memory())

    def _map(self, apply) -> GTRBatch:
        """The batch with `apply` run on every tensor (the neighbour dict's included)."""

        def one(value):
            return {key: apply(t) for key, t in value.items()} if isinstance(value, dict) else apply(value)

        return replace(self, **{f.name: one(getattr(self, f.name)) for f in fields(self)})


def random_batch(
    batch_size: int = 4,
    *,
    num_users: int = 10,
    num_authors: int = 5,
    segment_tokens: int = 5,
    content_dim: int = 8,
    history: int = 6,
    neighbours: int = 3,
    generator: torch.Generator | None = None,
) -> GTRBatch:
    """A well-formed batch of random values with some padding, for unit tests of models and train wrappers."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)

    def ids(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high + 1, shape, generator=g)  # 0 included: unknown / padding

    def floats(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    return GTRBatch(
        users=ids(num_users, batch_size),
        authors=ids(num_authors, batch_size),
        user_dense=floats(batch_size, len(USER_DENSE)),
        author_dense=floats(batch_size, len(AUTHOR_DENSE)),
        visual=floats(batch_size, segment_tokens, content_dim),
        speech=floats(batch_size, segment_tokens, content_dim),
        comments=floats(batch_size, segment_tokens, content_dim),
        history_authors=ids(num_authors, batch_size, history),
        history_content=floats(batch_size, history, content_dim),
        history_actions=floats(batch_size, history, len(HISTORY_ACTIONS)),
        neighbours={
            name: ids(num_users if METAPATH_TARGET[name] == "user" else num_authors, batch_size, neighbours)
            for name in METAPATHS
        },
        labels=(torch.rand(batch_size, len(TASKS), generator=g) < 0.3).float(),
    )
