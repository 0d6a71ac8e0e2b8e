"""How far the reference pages are from the brute-force optimum: the numbers the `user.py` docstring tables.

% of optimum = 100 * mean(utility of the pages) / mean(utility of the optimal pages): a ratio of means over
requests (per-request ratios would overweigh requests whose optimum is small). Three references:
score-sort (`optimum.score_sort_orders`), random (`optimum.random_orders`, averaged over `random_pages` pages per
request) and structure-aware (the brute-force optimum of a user model built from the features only,
`PageUser.from_features`, judged by the true user: what knowing the structure reaches without the hidden truth).
"""

from __future__ import annotations

import torch

from recsys.data.pages import LAYOUTS
from recsys.rerank.simulator.optimum import brute_force_optimum, random_orders, score_sort_orders
from recsys.rerank.simulator.user import PageUser
from recsys.rerank.simulator.world import Requests, generate_requests


def percent_of_optimum(requests: Requests, random_pages: int = 16, seed: int = 0) -> dict[str, float]:
    """Mean utilities and % of optimum of score-sort, random and structure-aware pages for these requests."""
    user = requests.user
    best, best_values = brute_force_optimum(requests)
    sort = user.utility(score_sort_orders(requests.batch).unsqueeze(1)).squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    random = user.utility(random_orders(requests.batch, random_pages, generator)).mean(dim=1)
    aware_orders, _ = brute_force_optimum(requests.batch, PageUser.from_features(requests.batch, user.params))
    aware = user.utility(aware_orders.unsqueeze(1)).squeeze(1)
    optimum = best_values.mean().item()
    return {
        "optimum": optimum,
        "score_sort": 100.0 * sort.mean().item() / optimum,
        "random": 100.0 * random.mean().item() / optimum,
        "structure_aware": 100.0 * aware.mean().item() / optimum,
        "optimum_is_not_sort": 100.0
        * (best != score_sort_orders(requests.batch)).any(dim=1).float().mean().item(),
    }


def calibration_report(
    num_requests: int = 1000, *, seed: int = 0, options: str = "default", author_caps: bool = True
) -> dict[str, dict[str, float]]:
    """`percent_of_optimum` per layout for `num_requests` requests of n = 8, m = 4 (the `user.py` table)."""
    return {
        layout: percent_of_optimum(
            generate_requests(
                num_requests, seed=seed, layout=layout, options=options, author_caps=author_caps
            ),
            seed=seed,
        )
        for layout in LAYOUTS
    }
