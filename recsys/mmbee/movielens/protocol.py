"""The MovieLens-100k protocol every model of this package is measured under: split, candidates, metrics.

Our choices (the paper's Table 3 does not state its protocol; RecBole's defaults are the likely source):
- Implicit feedback: every rating is an interaction, whatever its stars (RecBole's default for ml-100k).
- Per-user **temporal** split 80/10/10 by default (RecBole's `order: TO`; its default is `RO`, random order,
  available here as `SplitConfig(order="random")`). Why: MMBee ranks tomorrow's live streams from today's
  graph, and a random split lets a model train on a user's future to predict their past. The split is
  deterministic, so the spread over seeds measures the models, not the split. The sizes follow RecBole's
  `_calcu_split_ids`: valid and test get floor(10% of the user's interactions) each, raised to one (test
  first) while more than one would stay for training; ties in time keep the file's order.
- Full ranking over all items, excluding the user's known interactions: training items when ranking for the
  validation set, training and validation items for the test set (RecBole does the same). The models only
  ever train on the training part; validation only chooses epochs. At test time every model *reads* the
  graph of train + valid (`Split.history`: what is known before the test period, as a served model's graphs
  are refreshed; RecBole's sequential models read valid items as history too), so test, like validation, is
  one step ahead of the model's inputs. evaluate.py also reports test with train-only inputs.
- Recall@k and NDCG@k (binary gains, ideal DCG from all of the user's held-out items) through
  `recsys.metrics.recall_at_k` / `ndcg_at_k`; Precision@k = hits / k. Users with nothing held out are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recsys.data.movielens import Interactions
from recsys.metrics import ndcg_at_k, recall_at_k

Part = Literal["valid", "test"]


@dataclass(frozen=True)
class SplitConfig:
    order: Literal["time", "random"] = "time"
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 0
    """Only used by order="random"."""


@dataclass(frozen=True)
class Split:
    """(user, item) index pairs, int64 [N, 2], ids 1..num_users / 1..num_items as in `Interactions`."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    num_users: int
    num_items: int
    train_time: np.ndarray
    """int64 [len(train)] timestamps of the training pairs (what a model may know of their order)."""
    valid_time: np.ndarray | None = None
    """int64 [len(valid)]."""

    def matrix(self, *parts: str) -> sp.csr_matrix:
        """Binary user x item matrix [num_users + 1, num_items + 1] of the named parts (row/column 0 empty)."""
        pairs = np.concatenate([getattr(self, part) for part in parts or ("train",)])
        data = np.ones(len(pairs), dtype=np.float32)
        shape = (self.num_users + 1, self.num_items + 1)
        matrix = sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])), shape=shape)
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def known(self, part: Part) -> tuple[str, ...]:
        """The parts excluded from the ranking when `part` is evaluated."""
        return ("train",) if part == "valid" else ("train", "valid")

    def subset(self, users: np.ndarray) -> Split:
        """The same split restricted to some users (for fast tests); ids keep their meaning."""
        keep = np.zeros(self.num_users + 1, dtype=bool)
        keep[users] = True
        return Split(
            *(pairs[keep[pairs[:, 0]]] for pairs in (self.train, self.valid, self.test)),
            num_users=self.num_users,
            num_items=self.num_items,
            train_time=self.train_time[keep[self.train[:, 0]]],
            valid_time=None if self.valid_time is None else self.valid_time[keep[self.valid[:, 0]]],
        )

    def history(self, part: Part) -> Split:
        """What is known before `part`: the same split whose train part also holds the validation pairs when
        `part` is "test" (the graph a model reads at test time; its parameters stay trained on train only)."""
        if part == "valid":
            return self
        if self.valid_time is None:
            raise ValueError("this split has no validation timestamps")
        return replace(
            self,
            train=np.concatenate([self.train, self.valid]),
            train_time=np.concatenate([self.train_time, self.valid_time]),
        )


def split_interactions(data: Interactions, config: SplitConfig = SplitConfig()) -> Split:
    """Per-user split of every interaction into train / valid / test (see the module docstring)."""
    if config.order == "time":
        order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))  # by user, time, file row
    elif config.order == "random":
        shuffled = np.random.default_rng(config.seed).permutation(len(data))
        order = shuffled[np.argsort(data.user[shuffled], kind="stable")]
    else:
        raise ValueError(f"unknown split order {config.order!r}")
    users = data.user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    n_valid, n_test = _held_out_sizes(counts, config.valid_ratio, config.test_ratio)
    position = np.arange(len(users)) - np.repeat(starts, counts)  # rank of each row within its user
    n_train = np.repeat(counts - n_valid - n_test, counts)
    part = np.where(position < n_train, 0, np.where(position < n_train + np.repeat(n_valid, counts), 1, 2))
    pairs = np.stack([users, data.item[order]], axis=1)  # [N, 2]
    return Split(
        train=pairs[part == 0],
        valid=pairs[part == 1],
        test=pairs[part == 2],
        num_users=data.num_users,
        num_items=data.num_items,
        train_time=data.timestamp[order][part == 0],
        valid_time=data.timestamp[order][part == 1],
    )


def _held_out_sizes(
    counts: np.ndarray, valid_ratio: float, test_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's `_calcu_split_ids` per user: floor(ratio * n), raised to 1 (test first) while more than one
    would stay for training."""
    n_valid = np.floor(valid_ratio * counts).astype(np.int64)
    n_test = np.floor(test_ratio * counts).astype(np.int64)
    raise_test = (n_test == 0) & (test_ratio * counts > 0) & (counts - n_valid - n_test > 1)
    n_test = n_test + raise_test
    raise_valid = (n_valid == 0) & (valid_ratio * counts > 0) & (counts - n_valid - n_test > 1)
    return n_valid + raise_valid, n_test


@dataclass(frozen=True)
class RankingMetrics:
    recall: float
    precision: float
    ndcg: float
    users: int

    def as_dict(self) -> dict[str, float]:
        return {"recall": self.recall, "precision": self.precision, "ndcg": self.ndcg}


Scorer = Callable[[np.ndarray], np.ndarray]
"""users int64 [B] -> scores float [B, num_items + 1] (column 0 is ignored)."""


def top_k(scores: np.ndarray, exclude: sp.csr_matrix, users: np.ndarray, k: int) -> np.ndarray:
    """The k best items per user [B, k] (best first), never column 0 nor an item of `exclude`'s user row."""
    scores = np.array(scores, dtype=np.float64)  # a copy: masked below
    scores[:, 0] = -np.inf
    rows = exclude[users]
    scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [B, k], unordered
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def evaluate(
    scorer: Scorer, split: Split, part: Part = "test", k: int = 10, batch: int = 256
) -> RankingMetrics:
    """Full-ranking Recall@k, Precision@k, NDCG@k of `scorer` on the users that have `part` interactions."""
    target = split.matrix(part)
    exclude = split.matrix(*split.known(part))
    users = np.flatnonzero(np.diff(target.indptr))
    relevant, ranked = [], []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        ranked.extend(top_k(scorer(chunk), exclude, chunk, k))
        relevant.extend(set(target.indices[target.indptr[u] : target.indptr[u + 1]].tolist()) for u in chunk)
    hits = [np.isin(items, list(rel)).astype(np.float64) for items, rel in zip(ranked, relevant, strict=True)]
    gains = [np.r_[hit, np.ones(len(rel) - int(hit.sum()))] for hit, rel in zip(hits, relevant, strict=True)]
    return RankingMetrics(
        recall=recall_at_k(relevant, [items.tolist() for items in ranked], k),
        precision=float(np.mean([hit.sum() / k for hit in hits])),
        ndcg=ndcg_at_k(gains, k),
        users=len(users),
    )
