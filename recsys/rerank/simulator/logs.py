"""The simulator's logs: the pages a logging policy showed and what the simulated users did (the AR teacher's data).

The logging policy (our choice): a page is, with probability `random_share`, a uniformly random feasible page
(`optimum.random_orders`: exploration), else a Plackett-Luce draw over the options-weighted upstream scores at
`temperature` (Gumbel-max: keys = score / temperature + Gumbel noise, slots filled greedily by key among the
valid candidates whose author is below the cap, `optimum.capped_greedy_orders`; temperature -> 0 gives
score-and-sort). What a log holds per page: the sampled clicks per slot and, for clicked slots, the watch fraction
and the satisfaction (their expected values given the click), and the page's observed reward (the
options-weighted sum of that engagement plus the diversity term: `PageUser.sample_reward` of the same draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.rerank.models.decoding import gumbel
from recsys.rerank.simulator.optimum import capped_greedy_orders, random_orders, weighted_scores
from recsys.rerank.simulator.world import Requests

DEFAULT_TEMPERATURE = 0.2
"""Logging temperature on the weighted upstream score (whose standard deviation within a request is about 0.5
under the default options). Measured on 1000 requests (n = 8, m = 4, seed 0), 16 policy pages each: 0.05 -> 4
distinct pages per request, 85% of optimum; 0.2 -> 11 distinct, 82%; 0.4 -> 14 distinct, 76%. 0.2 keeps the
logs close to what a production ranker shows while most pages of a request differ."""
DEFAULT_RANDOM_SHARE = 0.2


@dataclass
class LoggedPages:
    """K logged pages per request: orders long [B, K, m], rewards float [B, K], engagement float [B, K, m, 3]
    (sampled clicks, click * watch, click * satisfaction: `pages.OBJECTIVES` in order)."""

    orders: torch.Tensor
    rewards: torch.Tensor
    engagement: torch.Tensor

    def select(self, rows: torch.Tensor | slice) -> LoggedPages:
        """The logs of the requests at `rows`."""
        return LoggedPages(
            orders=self.orders[rows], rewards=self.rewards[rows], engagement=self.engagement[rows]
        )


def log_pages(
    requests: Requests,
    pages_per_request: int,
    *,
    seed: int,
    temperature: float = DEFAULT_TEMPERATURE,
    random_share: float = DEFAULT_RANDOM_SHARE,
) -> LoggedPages:
    """`pages_per_request` logged pages per request from the logging policy, with sampled user feedback."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch, user = requests.batch, requests.user
    generator = torch.Generator().manual_seed(seed)
    shape = (batch.size, pages_per_request, batch.num_candidates)
    keys = weighted_scores(batch).unsqueeze(1) / temperature + gumbel(shape, generator)
    policy = capped_greedy_orders(batch, keys)  # [B, K, m]
    explore = torch.rand(batch.size, pages_per_request, generator=generator) < random_share
    uniform = random_orders(batch, pages_per_request, generator)
    orders = torch.where(explore.unsqueeze(-1), uniform, policy)

    engagement = user.sample_engagement(orders, generator)
    return LoggedPages(orders=orders, rewards=user.weigh(engagement, orders), engagement=engagement)
