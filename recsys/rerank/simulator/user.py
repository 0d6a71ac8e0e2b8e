"""The simulated user who browses a page of m slots: the ground truth (`PageUtility`) every reranker is judged by.

Why a structured user: score-and-sort ranks each item alone, so the simulator must plant dependencies between
slots (and a mismatch between the upstream scores' sum and the engagement's product) for whole-page reranking to
matter. Every constant lives in `UserParams`; the formulas (our choices, the paper does not publish its user):

Slot k of a page holds item i. Reading order is slot order (the grid is read row by row, left to right).

- **Examination** e_k (position bias). column: e_k = column_decay ** k (1, 0.8, 0.64, 0.51, ...).
  grid (2 columns, slot k at row k // 2, column k % 2): e_k = grid_row_decay ** (k // 2), times grid_right for the
  right column (1, 0.85, 0.7, 0.6, ...).
- **Adjacency** (used by fatigue and complements): column: slots k and k +- 1; grid: the other slot of the same
  row, and the slot directly above or below (k +- 2). Diagonals are not adjacent.
- **Fatigue**: with a_k adjacent and f_k non-adjacent *earlier* slots of the same category as slot k,
  fatigue_k = exp(-(fatigue_adjacent * a_k + fatigue_far * f_k)). Unknown categories never tire.
- **Complementary pairs** (`complement_pairs`: food+travel, gaming+comedy, music+sports): with c_k adjacent slots
  (earlier or later) whose category complements slot k's, lift_k = (1 + complement_lift) ** c_k.
- **Hidden taste**: a per-request, per-category multiplier on ctr (`PageUser.taste`, 1 in the stationary world,
  changed by `stream.DriftingStream`); never in the features.
- **Click**: click_k = e_k * min(1, ctr_i * taste[category_i] * fatigue_k * lift_k).
- **Watch** after a click: watch_i (the fraction of the video watched).
- **Satisfaction** after a click: sat_k = clip(satisfaction_i - author_repeat_penalty * r_k, -1, 1) where r_k is
  the number of earlier slots by the same author (a second video by one author disappoints: why caps exist).
- **Engagement** per slot (unweighted): (click_k, click_k * watch_i, click_k * sat_k).
- **Utility** of a page = sum_k (w_ctr * click_k + w_watch * click_k * watch_i + w_sat * click_k * sat_k)
  + diversity_weight * `pages.page_diversity`, with the weights from `batch.options`.
  Per click the value is w_ctr + w_watch * watch + w_sat * sat >= 1 - 0.5 = 0.5 under the default weights, so
  utilities are positive and "% of optimum" = mean(utility of the model's pages) / mean(utility of the optimal
  pages) -- a ratio of means over requests, not a mean of ratios -- is meaningful.
- **Sampled reward** (`sample_reward`): clicks ~ Bernoulli(click_k); watch and satisfaction are their expected
  values given the click, so the reward's mean over draws is exactly `utility`.

Why the best page is not the sort by score: the upstream scores are added (w . scores) while engagement
multiplies ctr by the value of a click (click-bait categories score high on ctr and low on satisfaction);
fatigue punishes the runs of one category that sorting produces; complements reward pairing; a repeated author
loses satisfaction; and the examination curve differs by layout. Measured by `python -m recsys.rerank.simulator`
(`calibration.calibration_report`: 1000 requests per layout, seed 0, n = 8, m = 4, default options, 30% of the
requests with author cap 1), mean % of the brute-force optimum (a ratio of means):

    layout   optimum   score-sort   random   structure-aware   optimum != sort
    column    1.607       85.7       55.5         99.8          94% of requests
    grid      1.698       85.2       55.7         99.7          95% of requests

structure-aware = the brute-force optimum of `PageUser.from_features` (the user model's structure, the noisy
upstream scores, no hidden truth), judged by the true user: the optimum is reachable from the features.
Random options (`--options random`), column / grid: score-sort 85.6 / 86.0, random 53.1 / 53.3.
Where the gap comes from (1000 requests, both layouts mixed, seed 0; score-sort % of optimum): everything 85.5;
without fatigue 88.9; without complements 90.9; without the author penalty 85.7 (it makes caps matter more than
it moves the sort); without all three 94.5 (what is left: the sum-vs-product mismatch and the feature noise).
Under random options a click can be worth less than nothing (a large satisfaction weight, a negative
satisfaction); the optimal pages' mean utility stays clearly positive (about 1.6).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from recsys.data.pages import (
    CATEGORIES,
    LAYOUTS,
    OBJECTIVES,
    PageBatch,
    category_index,
    gather_pages,
    page_diversity,
)


@dataclass(frozen=True)
class UserParams:
    """Every constant of the user model (see the module docstring for the formulas)."""

    column_decay: float = 0.8
    grid_row_decay: float = 0.7
    grid_right: float = 0.85
    fatigue_adjacent: float = 0.6
    fatigue_far: float = 0.25
    complement_lift: float = 0.35
    complement_pairs: tuple[tuple[str, str], ...] = (
        ("food", "travel"),
        ("gaming", "comedy"),
        ("music", "sports"),
    )
    author_repeat_penalty: float = 0.8


def examination(num_slots: int, params: UserParams = UserParams()) -> torch.Tensor:
    """Examination probability of each slot for each layout: float [len(LAYOUTS), m]."""
    slot = torch.arange(num_slots, dtype=torch.float32)
    column = params.column_decay**slot
    grid = params.grid_row_decay ** torch.div(slot, 2, rounding_mode="floor") * torch.where(
        slot % 2 == 1, params.grid_right, 1.0
    )
    by_layout = {"column": column, "grid": grid}
    return torch.stack([by_layout[name] for name in LAYOUTS])


def adjacency(num_slots: int) -> torch.Tensor:
    """Whether two slots are neighbours, for each layout: bool [len(LAYOUTS), m, m] (symmetric, no diagonal)."""
    slot = torch.arange(num_slots)
    gap = (slot.view(-1, 1) - slot.view(1, -1)).abs()
    column = gap == 1
    same_row = (slot.view(-1, 1) // 2 == slot.view(1, -1) // 2) & (gap == 1)
    grid = same_row | (gap == 2)
    by_layout = {"column": column, "grid": grid}
    return torch.stack([by_layout[name] for name in LAYOUTS])


def complement_table(params: UserParams = UserParams()) -> torch.Tensor:
    """Whether two categories complement each other: bool [C + 1, C + 1], row/column 0 = unknown category
    (index with category_index + 1)."""
    table = torch.zeros(len(CATEGORIES) + 1, len(CATEGORIES) + 1, dtype=torch.bool)
    for first, second in params.complement_pairs:
        a, b = CATEGORIES.index(first) + 1, CATEGORIES.index(second) + 1
        table[a, b] = table[b, a] = True
    return table


def _pairwise_same(keys: torch.Tensor) -> torch.Tensor:
    """Whether two slots hold the same known key: [..., m] -> bool [..., m, m] (-1 matches nothing)."""
    return (keys.unsqueeze(-1) == keys.unsqueeze(-2)) & (keys >= 0).unsqueeze(-1)


@dataclass
class PageUser:
    """The ground truth for one `PageBatch` (implements `pages.PageUtility`); holds the hidden true attributes.

    ctr, watch, satisfaction: float [B, n], the items' true attributes; taste: float [B, len(CATEGORIES)]."""

    batch: PageBatch
    ctr: torch.Tensor
    watch: torch.Tensor
    satisfaction: torch.Tensor
    taste: torch.Tensor
    params: UserParams = UserParams()

    @classmethod
    def from_features(cls, batch: PageBatch, params: UserParams = UserParams()) -> PageUser:
        """A user whose attributes are the batch's upstream scores and whose taste is neutral: the structure of
        the user model with only what a reranker can see (the reference that shows the optimum is reachable)."""
        scores = batch.features[..., : len(OBJECTIVES)]
        return cls(
            batch=batch,
            ctr=scores[..., 0].clamp(0.0, 1.0),
            watch=scores[..., 1].clamp(0.0, 1.0),
            satisfaction=scores[..., 2].clamp(-1.0, 1.0),
            taste=torch.ones(batch.size, len(CATEGORIES), device=batch.features.device),
            params=params,
        )

    def to(self, device: torch.device | str) -> PageUser:
        """The same user with every tensor (its batch's included) on `device`."""
        return replace(
            self,
            batch=self.batch.to(device),
            ctr=self.ctr.to(device),
            watch=self.watch.to(device),
            satisfaction=self.satisfaction.to(device),
            taste=self.taste.to(device),
        )

    def select(self, rows: torch.Tensor | slice) -> PageUser:
        """The user of the requests at `rows`."""
        return replace(
            self,
            batch=self.batch.select(rows),
            ctr=self.ctr[rows],
            watch=self.watch[rows],
            satisfaction=self.satisfaction[rows],
            taste=self.taste[rows],
        )

    def _slots(self, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Click probability, watch fraction and satisfaction of each slot: [B, K, m] -> 3 x float [B, K, m]."""
        batch, params = self.batch, self.params
        device, slots = orders.device, orders.shape[-1]
        layout = batch.layout.to(device)
        exam = examination(slots, params).to(device)[layout].unsqueeze(1)  # [B, 1, m]
        adjacent = adjacency(slots).to(device)[layout].unsqueeze(1)  # [B, 1, m, m]
        earlier = torch.ones(slots, slots, dtype=torch.bool, device=device).tril(-1)  # [k, j]: j before k

        categories = gather_pages(category_index(batch), orders)  # [B, K, m]
        same_category = _pairwise_same(categories) & earlier  # [B, K, m, m]
        near = (same_category & adjacent).sum(dim=-1)
        far = (same_category & ~adjacent).sum(dim=-1)
        fatigue = torch.exp(-(params.fatigue_adjacent * near + params.fatigue_far * far))

        complements = complement_table(params).to(device)
        known = categories + 1  # 0: unknown
        pairs = complements[known.unsqueeze(-1), known.unsqueeze(-2)] & adjacent  # [B, K, m, m]
        lift = (1.0 + params.complement_lift) ** pairs.sum(dim=-1)

        # the taste of an unknown category is 1 (an extra last column)
        taste = torch.cat([self.taste, torch.ones_like(self.taste[:, :1])], dim=1)  # [B, C + 1]
        own = category_index(batch)
        item_taste = gather_pages(taste.gather(1, torch.where(own >= 0, own, len(CATEGORIES))), orders)
        click = exam * (gather_pages(self.ctr, orders) * item_taste * fatigue * lift).clamp(max=1.0)

        authors = gather_pages(batch.authors, orders)
        repeats = (_pairwise_same(authors) & earlier).sum(dim=-1)
        satisfaction = (
            gather_pages(self.satisfaction, orders) - params.author_repeat_penalty * repeats
        ).clamp(-1.0, 1.0)
        return click, gather_pages(self.watch, orders), satisfaction

    def engagement(self, orders: torch.Tensor) -> torch.Tensor:
        """Expected (click, click * watch, click * satisfaction) per slot: [B, K, m] -> float [B, K, m, 3]."""
        click, watch, satisfaction = self._slots(orders)
        return torch.stack([click, click * watch, click * satisfaction], dim=-1)

    def weigh(self, engagement: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        """A page's utility from its per-slot engagement (expected or observed): the options-weighted sum plus the
        diversity term: engagement [B, K, m, 3], orders [B, K, m] -> [B, K]."""
        options = self.batch.options.to(engagement.device)
        weights = options[:, : len(OBJECTIVES)].view(-1, 1, 1, len(OBJECTIVES))
        diversity = options[:, len(OBJECTIVES)].view(-1, 1)
        return (engagement * weights).sum(dim=(-1, -2)) + diversity * page_diversity(self.batch, orders)

    def utility(self, orders: torch.Tensor) -> torch.Tensor:
        """Expected utility of each page: orders long [B, K, m] -> float [B, K]."""
        return self.weigh(self.engagement(orders), orders)

    def sample_engagement(self, orders: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One user's observed engagement per slot (clicks drawn): [B, K, m] -> float [B, K, m, 3]."""
        click, watch, satisfaction = self._slots(orders)
        clicked = torch.bernoulli(click, generator=generator)
        return torch.stack([clicked, clicked * watch, clicked * satisfaction], dim=-1)

    def sample_reward(self, orders: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One user's observed utility of each page: [B, K, m] -> float [B, K]; its mean over draws is `utility`."""
        return self.weigh(self.sample_engagement(orders, generator), orders)
