"""Requests of the simulated world: n candidates with hidden true attributes, their upstream scores, and the user.

`generate_requests` is vectorised over requests (20 000 requests of n = 8 in well under a second) and
deterministic by seed. What a request holds (our choices; the constants live in `WorldParams`):

- **Categories**: each request has `topics` favourite categories (drawn uniformly, with replacement); an item's
  category is one of them with probability `topic_share`, else uniform over `CATEGORIES`. So a page often has
  several items of one category, and fatigue matters.
- **Authors**: `max(n // 2, 1)` authors per request, drawn with replacement, so duplicates happen. A share
  `author_cap_share` of requests carries `author_cap` 1 (others 0: no cap); those get `max(n // 2, m)` authors
  and at least m distinct ones, so a feasible page always exists.
- **True attributes** from an item quality q ~ N(0, 1) shared by all three (so they correlate) and the
  category's profile (`CATEGORY_PROFILES`: click-bait categories have a high ctr and a low satisfaction):
  ctr = 0.02 + 0.58 * sigmoid(ctr_bias + profile_ctr + 0.8 q + 0.6 e1)          in [0.02, 0.6]
  watch = sigmoid(profile_watch + 0.8 q + 0.6 e2)                               in [0, 1]
  satisfaction = tanh(profile_sat + 0.6 q + 0.5 e3)                             in [-1, 1]
  with e ~ N(0, 1) independent per item and attribute.
- **Upstream scores** (the first `len(OBJECTIVES)` features) = the true attributes + N(0, feature_noise^2),
  feature_noise = 0.02: small, so the optimum is reachable from the features; then the category one-hot.
- **Options**: "default" = `pages.options_vector()` for every request; "random" = objective weights
  Dirichlet(1, 1, 1) scaled to sum 2.5 (the default weights' sum) and a diversity weight that is 0 half the
  time, else uniform in [0, 0.5], so models learn to condition on the options.
- **Layout**: None = column or grid with probability 1/2 each; or one of `LAYOUTS` for every request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from recsys.data.pages import CATEGORIES, LAYOUTS, OBJECTIVES, PageBatch, options_vector
from recsys.rerank.simulator.user import PageUser, UserParams

CATEGORY_PROFILES = {
    #          ctr   watch  satisfaction (offsets of the logits / tanh argument)
    "gaming": (0.2, 0.3, 0.0),
    "music": (0.0, 0.0, 0.2),
    "food": (-0.3, 0.1, 0.4),
    "sports": (0.0, 0.2, 0.1),
    "comedy": (0.6, -0.2, -0.3),
    "beauty": (1.0, -0.5, -0.9),
    "pets": (-0.2, 0.2, 0.5),
    "travel": (-0.6, 0.3, 0.7),
}
"""Per-category offsets; comedy and beauty are click-bait (high ctr, low satisfaction)."""

OPTIONS_WEIGHT_SUM = 2.5
"""Random objective weights sum to this (the sum of `pages.DEFAULT_OBJECTIVE_WEIGHTS`)."""


@dataclass(frozen=True)
class WorldParams:
    """Every constant of request generation (see the module docstring)."""

    feature_noise: float = 0.02
    topics: int = 3
    topic_share: float = 0.75
    author_cap_share: float = 0.3
    ctr_bias: float = -1.0
    ctr_range: tuple[float, float] = (0.02, 0.6)
    max_diversity_weight: float = 0.5


@dataclass
class Requests:
    """A batch of simulated requests: what rerankers see (`batch`) and the ground truth (`user`)."""

    batch: PageBatch
    user: PageUser

    @property
    def size(self) -> int:
        return self.batch.size

    def to(self, device: torch.device | str) -> Requests:
        user = self.user.to(device)
        return Requests(batch=user.batch, user=user)

    def select(self, rows: torch.Tensor | slice) -> Requests:
        """The requests at `rows` (a slice or an index tensor)."""
        user = self.user.select(rows)
        return Requests(batch=user.batch, user=user)


def _random_options(num_requests: int, generator: torch.Generator, world: WorldParams) -> torch.Tensor:
    exponential = -torch.log(torch.rand(num_requests, len(OBJECTIVES), generator=generator).clamp_min(1e-12))
    weights = OPTIONS_WEIGHT_SUM * exponential / exponential.sum(dim=1, keepdim=True)  # Dirichlet(1, ..., 1)
    diverse = torch.rand(num_requests, generator=generator) < 0.5
    diversity = torch.where(
        diverse, world.max_diversity_weight * torch.rand(num_requests, generator=generator), 0.0
    )
    return torch.cat([weights, diversity.unsqueeze(1)], dim=1)


def _authors(
    num_requests: int, num_candidates: int, num_slots: int, capped: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Author index per candidate: long [B, n]; capped rows have at least `num_slots` distinct authors."""
    free = torch.randint(max(num_candidates // 2, 1), (num_requests, num_candidates), generator=generator)
    pool = max(num_candidates // 2, num_slots)
    drawn = torch.randint(pool, (num_requests, num_candidates), generator=generator)
    # the first m candidates of a capped row take m distinct authors, then the row is shuffled
    distinct = torch.rand(num_requests, pool, generator=generator).argsort(dim=1)[:, :num_slots]
    drawn[:, :num_slots] = distinct
    shuffle = torch.rand(num_requests, num_candidates, generator=generator).argsort(dim=1)
    return torch.where(capped.unsqueeze(1), drawn.gather(1, shuffle), free)


def generate_requests(
    num_requests: int,
    num_candidates: int = 8,
    num_slots: int = 4,
    *,
    seed: int,
    layout: str | None = None,
    options: str = "default",
    author_caps: bool = True,
    taste: torch.Tensor | None = None,
    params: UserParams | None = None,
    world: WorldParams | None = None,
) -> Requests:
    """`num_requests` requests of `num_candidates` items for pages of `num_slots` slots, deterministic by seed.

    taste: the hidden per-category ctr multiplier, float [len(CATEGORIES)] or [B, len(CATEGORIES)]; None: 1.
    params, world: the user's and the world's constants; None: their defaults."""
    params = UserParams() if params is None else params
    world = WorldParams() if world is None else world
    if not 0 < num_slots <= num_candidates:
        raise ValueError(f"num_slots must be in 1..num_candidates ({num_candidates}), got {num_slots}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be None or one of {LAYOUTS}, got {layout!r}")
    if options not in ("default", "random"):
        raise ValueError(f"options must be 'default' or 'random', got {options!r}")
    generator = torch.Generator().manual_seed(seed)
    shape = (num_requests, num_candidates)

    topics = torch.randint(len(CATEGORIES), (num_requests, world.topics), generator=generator)
    pick = torch.randint(world.topics, shape, generator=generator)
    on_topic = torch.rand(shape, generator=generator) < world.topic_share
    category = torch.where(
        on_topic, topics.gather(1, pick), torch.randint(len(CATEGORIES), shape, generator=generator)
    )  # [B, n]

    profile = torch.tensor(list(CATEGORY_PROFILES.values()))[category]  # [B, n, 3]; same order as CATEGORIES
    quality = torch.randn(shape, generator=generator)
    noise = torch.randn(*shape, 3, generator=generator)
    low, high = world.ctr_range
    ctr = low + (high - low) * torch.sigmoid(
        world.ctr_bias + profile[..., 0] + 0.8 * quality + 0.6 * noise[..., 0]
    )
    watch = torch.sigmoid(profile[..., 1] + 0.8 * quality + 0.6 * noise[..., 1])
    satisfaction = torch.tanh(profile[..., 2] + 0.6 * quality + 0.5 * noise[..., 2])

    truth = torch.stack([ctr, watch, satisfaction], dim=-1)
    scores = truth + world.feature_noise * torch.randn(truth.shape, generator=generator)
    one_hot = torch.nn.functional.one_hot(category, len(CATEGORIES)).to(torch.float32)

    capped = torch.rand(num_requests, generator=generator) < (world.author_cap_share if author_caps else 0.0)
    authors = _authors(num_requests, num_candidates, num_slots, capped, generator)

    if options == "random":
        options_rows = _random_options(num_requests, generator, world)
    else:
        options_rows = options_vector().expand(num_requests, -1).clone()
    if layout is None:
        layouts = torch.randint(len(LAYOUTS), (num_requests,), generator=generator)
    else:
        layouts = torch.full((num_requests,), LAYOUTS.index(layout), dtype=torch.long)

    batch = PageBatch(
        features=torch.cat([scores, one_hot], dim=-1),
        authors=authors,
        valid=torch.ones(shape, dtype=torch.bool),
        options=options_rows,
        author_cap=capped.long(),
        layout=layouts,
        num_slots=num_slots,
    )
    if taste is None:
        taste = torch.ones(len(CATEGORIES))
    user = PageUser(
        batch=batch,
        ctr=ctr,
        watch=watch,
        satisfaction=satisfaction,
        taste=taste.to(torch.float32).expand(num_requests, -1).clone(),
        params=params,
    )
    return Requests(batch=batch, user=user)


def with_taste(requests: Requests, taste: torch.Tensor) -> Requests:
    """The same requests under another hidden taste (float [len(CATEGORIES)] or [B, len(CATEGORIES)])."""
    user = replace(requests.user, taste=taste.to(torch.float32).expand(requests.size, -1).clone())
    return Requests(batch=requests.batch, user=user)
