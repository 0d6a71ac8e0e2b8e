"""The neighbour lists the GIE model attends over, from the training part only, through MMBee's graph code.

An adapter over `recsys.mmbee.graph` (Swing, `metapath_neighbours`), which names the item side "a" (author,
MMBee's streamer); here the lists are renamed u2a2u -> u2i2u, u2a2u2a -> u2i2u2i, u2a2a -> u2i2i, a2a -> i2i,
a2u2a -> i2u2i, and one more list is added:

- u2i: the user's K most recent training items, most recent first (MMBee's behaviour sequence).

Recency (our choice, the analogue of MMBee's gift weights in R): the user-side metapaths are computed from
R_w[u, i] = exp(-r / tau), r = 0 for the user's most recent training item, 1 for the one before, ...
So u2i2i holds the items Swing-similar to what the user watched lately, u2i2u the users who share the
user's recent items. MovieLens tastes drift over a user's ratings; a temporal split tests exactly that.
`recency_tau=None` gives the unweighted lists. Swing and the item-side lists use the binary R (an item's
neighbours do not depend on any user's clock).

Nothing from the validation or test parts reaches a list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys.mmbee.graph.config import ExpansionConfig
from recsys.mmbee.graph.metapaths import gift_matrix, metapath_neighbours
from recsys.mmbee.graph.swing import swing
from recsys.mmbee.movielens.protocol import Split

logger = logging.getLogger(__name__)

USER_METAPATHS = ("u2i", "u2i2u", "u2i2u2i", "u2i2i")
"""Of the user: recent items, similar users, their items minus the user's own, Swing-similar items."""
ITEM_METAPATHS = ("i2i", "i2u2i")
"""Of the candidate item: Swing-similar items, items sharing its users."""
GRAPH_NAMES = {"u2i2u": "u2a2u", "u2i2u2i": "u2a2u2a", "u2i2i": "u2a2a", "i2i": "a2a", "i2u2i": "a2u2a"}
USER_TARGET = {"u2i": "item", "u2i2u": "user", "u2i2u2i": "item", "u2i2i": "item"}


@dataclass(frozen=True)
class Expansions:
    indices: dict[str, np.ndarray]
    """name -> int64 [N + 1, K] neighbour ids (users for u2i2u, items otherwise; 0 = padding at the end)."""
    scores: dict[str, np.ndarray]
    """name -> float32 [N + 1, K] what they were ranked by (path weights, Swing sums, recency weights); > 0."""


def recency_rank(split: Split) -> np.ndarray:
    """int64 [len(split.train)]: 0 for each user's most recent training pair, 1 for the one before, ...
    (ties in time: the later row of split.train counts as more recent)."""
    train = split.train
    order = np.lexsort((np.arange(len(train)), split.train_time, train[:, 0]))  # by user, time, row
    users = train[order, 0]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.empty(len(train), dtype=np.int64)
    rank[order] = np.repeat(starts + counts, counts) - np.arange(len(users)) - 1
    return rank


def recent_items(split: Split, k: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """u2i: ids int64 [U + 1, k] of each user's k most recent training items (0-padded), most recent first,
    and their recency weights exp(-rank / tau) float32 [U + 1, k]."""
    rank = recency_rank(split)
    keep = rank < k
    indices = np.zeros((split.num_users + 1, k), dtype=np.int64)
    indices[split.train[keep, 0], rank[keep]] = split.train[keep, 1]
    weights = np.zeros((split.num_users + 1, k), dtype=np.float32)
    weights[split.train[keep, 0], rank[keep]] = np.exp(-rank[keep] / tau)
    return indices, weights


def build_expansions(
    split: Split, k: int = 10, recency_tau: float | None = 10.0, config: ExpansionConfig | None = None
) -> Expansions:
    """Every list of `USER_METAPATHS` and `ITEM_METAPATHS`, K = `k`, from split.train."""
    config = config or ExpansionConfig(k=k)
    if config.k != k:
        raise ValueError(f"k={k} disagrees with config.k={config.k}")
    users, items = split.train[:, 0], split.train[:, 1]
    binary = gift_matrix(users, items, np.ones(len(users)), split.num_users, split.num_items)
    similarity = swing(binary, config.swing)  # [I + 1, I + 1]
    item_side = metapath_neighbours(binary, similarity, config)
    if recency_tau is None:
        user_side = item_side
    else:
        weights = np.exp(-recency_rank(split) / recency_tau)
        weighted = gift_matrix(users, items, weights, split.num_users, split.num_items)
        user_side = metapath_neighbours(weighted, similarity, config)
    indices, scores = {}, {}
    indices["u2i"], scores["u2i"] = recent_items(split, k, recency_tau or k)
    for ours, theirs in GRAPH_NAMES.items():
        lists = user_side if ours in USER_TARGET else item_side
        indices[ours], scores[ours] = lists[theirs]
    return Expansions(indices=indices, scores=scores)
