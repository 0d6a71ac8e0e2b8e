"""Ranking metrics, as the papers this monorepo follows report them (MMBee's Table 2: AUC, UAUC, GAUC; NAR4Rec:
Recall@k; NDCG@k), on scikit-learn's `roc_auc_score` so ties and edge cases follow the reference implementation.

- `auc`: the probability that a random positive scores above a random negative (ties count one half).
- `uauc`: the mean of per-user AUCs, each user weighted equally (*our* reading of MMBee's UAUC).
- `gauc`: per-user AUCs weighted by the user's number of impressions (Zhou et al., DIN, KDD 2018).
Users whose impressions are all positive or all negative have no AUC and are left out of both (how many were
kept is returned by `grouped_auc`). With very sparse positives (gift-through rate) most users are left out, which
is why papers report all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """AUC of `scores` for binary `labels`; NaN when only one class is present."""
    labels, scores = _checked(labels, scores)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


@dataclass(frozen=True)
class GroupedAUC:
    uauc: float
    """Mean AUC over groups that have both classes."""
    gauc: float
    """Impression-weighted mean AUC over the same groups."""
    groups: int
    """Groups with both classes (the others have no AUC)."""
    total_groups: int


def grouped_auc(labels, scores, groups) -> GroupedAUC:
    """Per-group AUCs (e.g. one group per user) summarised as UAUC and GAUC."""
    labels, scores = _checked(labels, scores)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has shape {groups.shape}, labels {labels.shape}")
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], len(order)]
    aucs, weights = [], []
    for start, end in zip(starts, ends, strict=True):
        index = order[start:end]
        group_labels = labels[index]
        if group_labels.min() == group_labels.max():
            continue
        aucs.append(roc_auc_score(group_labels, scores[index]))
        weights.append(end - start)
    if not aucs:
        return GroupedAUC(float("nan"), float("nan"), 0, len(starts))
    return GroupedAUC(float(np.mean(aucs)), float(np.average(aucs, weights=weights)), len(aucs), len(starts))


def uauc(labels, scores, groups) -> float:
    return grouped_auc(labels, scores, groups).uauc


def gauc(labels, scores, groups) -> float:
    return grouped_auc(labels, scores, groups).gauc


def recall_at_k(relevant: Sequence[set], ranked: Sequence[Sequence], k: int) -> float:
    """Mean over requests of |relevant ∩ top-k of ranked| / |relevant| (requests with nothing relevant skipped)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = [len(set(r[:k]) & rel) / len(rel) for rel, r in zip(relevant, ranked, strict=True) if rel]
    return float(np.mean(values)) if values else float("nan")


def ndcg_at_k(gains: Sequence[Sequence[float]], k: int) -> float:
    """Mean NDCG@k of lists whose i-th entry is the gain of the item shown at position i (log2 discount; lists
    whose ideal DCG is 0 are skipped)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = []
    for shown in gains:
        shown = np.asarray(shown, dtype=np.float64)
        discount = 1.0 / np.log2(np.arange(2, min(k, len(shown)) + 2))
        ideal = float(np.sort(shown)[::-1][:k] @ discount)
        if ideal > 0:
            values.append(float(shown[:k] @ discount) / ideal)
    return float(np.mean(values)) if values else float("nan")


def _checked(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels has {labels.size} values, scores {scores.size}")
    if labels.size == 0:
        raise ValueError("no examples")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return labels, scores
