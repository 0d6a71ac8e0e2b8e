"""The page every reranker, simulator, trainer and the engine exchange: one row per request, n candidates, m slots.

A request is a list of n candidate items (the ranking stage's output) and a page of m = `num_slots` slots to
fill, on one of two layouts (`LAYOUTS`): a single column, or the two-column grid of a short-video feed (slot k
sits in row k // 2, column k % 2). A page is an *order*: m distinct candidate indices, slot 0 first.

Shapes (B: requests, n: candidates, m: slots, K: pages per request, F: features, O: options):

    features    float [B, n, F]  per-candidate features, columns `FEATURES`: the upstream scores by objective
                                 (`OBJECTIVES`), then a one-hot of the item's category (`CATEGORIES`; all zero:
                                 unknown category)
    authors     long  [B, n]     the author's index within the request (equal index = same author; -1: none)
    valid       bool  [B, n]     a real candidate (False: padding, never placed)
    options     float [B, O]     the utility options, columns `OPTIONS`: each objective's weight, then the
                                 diversity weight (what the page optimises; rerankers condition on it)
    author_cap  long  [B]        at most this many items by one author on the page (0: no limit)
    layout      long  [B]        index into `LAYOUTS`
    num_slots   int              m, the same for the whole batch

    orders      long  [B, K, m]  K pages per request (candidate indices)

`PageUtility` is the ground truth bound to one batch of requests (the simulator's user model, or a held-out
page set): how much a page is worth. Models never see it; trainers and evaluations do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch

OBJECTIVES = ("ctr", "watch_time", "satisfaction")
"""Upstream score names (`RerankItem.scores` keys) and the engagement the page utility weighs.

ctr: probability of a click when the slot is examined; watch_time: expected fraction of the video watched
after a click; satisfaction: expected rating after a click, in [-1, 1]."""
CATEGORIES = ("gaming", "music", "food", "sports", "comedy", "beauty", "pets", "travel")
"""Item categories (`FeatureSet.categorical_features["category"]`); anything else is unknown (all-zero)."""
FEATURES = OBJECTIVES + tuple(f"category={name}" for name in CATEGORIES)
OPTIONS = tuple(f"weight={name}" for name in OBJECTIVES) + ("diversity",)
DEFAULT_OBJECTIVE_WEIGHTS = {"ctr": 1.0, "watch_time": 1.0, "satisfaction": 0.5}
"""The page utility's objective weights when a request names none (one place for the default)."""
LAYOUTS = ("column", "grid")


@dataclass
class PageBatch:
    features: torch.Tensor
    authors: torch.Tensor
    valid: torch.Tensor
    options: torch.Tensor
    author_cap: torch.Tensor
    layout: torch.Tensor
    num_slots: int

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @property
    def num_candidates(self) -> int:
        return self.features.shape[1]

    def to(self, device: torch.device | str) -> PageBatch:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def select(self, rows: torch.Tensor | slice) -> PageBatch:
        """The requests at `rows` (a slice or an index tensor)."""
        picked = {
            f.name: getattr(self, f.name)[rows]
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **picked)


def options_vector(
    objective_weights: dict[str, float] | None = None, diversity_weight: float = 0.0
) -> torch.Tensor:
    """The `OPTIONS` row for these weights; missing objectives weigh 0, no weights at all: the defaults."""
    weights = DEFAULT_OBJECTIVE_WEIGHTS if not objective_weights else objective_weights
    return torch.tensor([float(weights.get(name, 0.0)) for name in OBJECTIVES] + [float(diversity_weight)])


class PageUtility(Protocol):
    """Ground truth for one `PageBatch`: what each page is worth to its request's user."""

    def utility(self, orders: torch.Tensor) -> torch.Tensor:
        """Expected utility of each page: orders long [B, K, m] -> float [B, K] (weighted by `options`)."""
        ...

    def engagement(self, orders: torch.Tensor) -> torch.Tensor:
        """Expected engagement per slot and objective: [B, K, m] -> float [B, K, m, len(OBJECTIVES)] (unweighted)."""
        ...

    def sample_reward(self, orders: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One user's observed utility of each page (sampled clicks): [B, K, m] -> float [B, K]; the
        streaming reward of online RL. Its mean over many draws is `utility`."""
        ...


def weighted_scores(batch: PageBatch) -> torch.Tensor:
    """The options-weighted upstream score of every candidate, sum_o w_o * features[..., o] (the score-and-sort
    key): float [B, n]."""
    objectives = len(OBJECTIVES)
    return (batch.features[..., :objectives] * batch.options[:, None, :objectives]).sum(dim=-1)


def gather_pages(values: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Per-candidate values [B, n, ...] at the pages' slots: orders [B, K, m] -> [B, K, m, ...]."""
    batch, pages, slots = orders.shape
    flat = orders.reshape(batch, pages * slots)
    index = flat.view(batch, pages * slots, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index).view(batch, pages, slots, *values.shape[2:])


def category_index(batch: PageBatch) -> torch.Tensor:
    """Each candidate's index into `CATEGORIES`, -1 when unknown: long [B, n]."""
    one_hot = batch.features[..., len(OBJECTIVES) :]
    known = one_hot.max(dim=-1).values > 0
    return torch.where(known, one_hot.argmax(dim=-1), torch.full_like(known, -1, dtype=torch.long))


def _distinct(keys: torch.Tensor) -> torch.Tensor:
    """How many distinct keys each page holds, counting every -1 (unknown) as its own: [B, K, m] -> [B, K]."""
    slots = keys.shape[-1]
    same = keys.unsqueeze(-1) == keys.unsqueeze(-2)  # [B, K, m, m]
    earlier = torch.ones(slots, slots, dtype=torch.bool, device=keys.device).tril(-1)
    repeated = (same & earlier & (keys >= 0).unsqueeze(-1)).any(dim=-1)
    return (~repeated).sum(dim=-1).to(torch.float32)


def page_diversity(batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
    """Diversity of each page in [0, 1]: the mean of the shares of distinct categories and distinct authors
    among its m items. One definition for the simulator, the evaluator and the engine: [B, K, m] -> [B, K]."""
    slots = orders.shape[-1]
    categories = gather_pages(category_index(batch), orders)
    authors = gather_pages(batch.authors, orders)
    return 0.5 * (_distinct(categories) + _distinct(authors)) / slots


def within_author_cap(batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
    """Whether each page keeps its request's `author_cap` (always, where the cap is 0): [B, K, m] -> bool [B, K]."""
    authors = gather_pages(batch.authors, orders)
    same = (authors.unsqueeze(-1) == authors.unsqueeze(-2)) & (authors >= 0).unsqueeze(-1)
    most = same.sum(dim=-1).max(dim=-1).values  # the largest number of items by one author
    cap = batch.author_cap.view(-1, 1)
    return (cap <= 0) | (most <= cap)
