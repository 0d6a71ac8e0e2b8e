"""Reference pages: the brute-force optimum, uniformly random pages and the score-and-sort page.

- `brute_force_optimum` enumerates every ordered page of m out of n candidates once
  (`itertools.permutations(range(n), m)`), scores them for all requests at once in chunks of pages (so it works
  with any `PageUtility`, which is bound to its whole batch), and drops per request the pages that hold a padded
  candidate or break the author cap. n = 8, m = 4 is 1680 pages (2000 requests: about 2.5 s on 2 CPU cores);
  more than `MAX_PAGES` pages is refused.
- `capped_greedy_orders` fills the slots one by one with the highest-keyed candidate that is valid, unused and
  whose author is below the cap. With the options-weighted upstream scores as keys it is score-and-sort
  (`score_sort_orders`); with keys perturbed by Gumbel noise it draws a Plackett-Luce page restricted to the
  feasible pages (the logging policy, `logs.py`). It never dead-ends when a feasible page exists (sum over
  authors of min(candidates, cap) >= m): each pick uses one unit of that capacity, so some stays while fewer than
  m slots are filled.
- `random_orders` draws pages uniformly from the feasible pages: by rejection (a uniform top-m of random keys,
  redrawn where the cap is broken; exactly uniform) for up to `max_rounds` rounds, then, for the pages still
  infeasible (rare: only capped requests whose authors are very unbalanced), exactly among the enumerated
  feasible pages where n P m <= `EXACT_RANDOM_PAGES` (n = 8, m = 4 included), else the greedy page of their random
  keys (feasible, no longer exactly uniform). 20 000 requests x 4 pages at n = 8, m = 4: about 0.2 s.
"""

from __future__ import annotations

import itertools
import math

import torch

from recsys.data.pages import (
    PageBatch,
    PageUtility,
    gather_pages,
    weighted_scores,
    within_author_cap,
)

MAX_PAGES = 100_000
"""The most pages (n P m) `brute_force_optimum` enumerates."""
EXACT_RANDOM_PAGES = 5_000
"""Up to this many pages (n P m), `random_orders` draws its last pages among the enumerated feasible pages."""
EXACT_RANDOM_CELLS = 2_000_000
"""Requests x pages checked for feasibility at once by `random_orders` (bounds its memory)."""


def all_pages(num_candidates: int, num_slots: int) -> torch.Tensor:
    """Every ordered page of `num_slots` out of `num_candidates`: long [n P m, m]."""
    count = math.perm(num_candidates, num_slots)
    if count > MAX_PAGES:
        raise ValueError(
            f"brute force over {num_candidates} P {num_slots} = {count} pages exceeds the limit of {MAX_PAGES}; "
            "use fewer candidates or slots"
        )
    return torch.tensor(list(itertools.permutations(range(num_candidates), num_slots)), dtype=torch.long)


def feasible(batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
    """Whether each page holds only valid candidates and keeps the author cap: [B, K, m] -> bool [B, K]."""
    valid = gather_pages(batch.valid, orders).all(dim=-1)
    return valid & within_author_cap(batch, orders)


def brute_force_optimum(
    source, user: PageUtility | None = None, *, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best feasible page of each request: (orders long [B, m], values float [B]).

    source: a `world.Requests`, or a `PageBatch` together with its `user`; chunk: pages scored at once."""
    batch, user = (source.batch, source.user) if user is None else (source, user)
    pages = all_pages(batch.num_candidates, batch.num_slots).to(batch.features.device)
    best_value = torch.full((batch.size,), -math.inf, device=pages.device)
    best_index = torch.zeros(batch.size, dtype=torch.long, device=pages.device)
    for start in range(0, pages.shape[0], chunk):
        orders = pages[start : start + chunk].unsqueeze(0).expand(batch.size, -1, -1)  # [B, c, m]
        values = user.utility(orders).masked_fill(~feasible(batch, orders), -math.inf)
        value, index = values.max(dim=1)
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_index = torch.where(better, index + start, best_index)
    if torch.isinf(best_value).any():
        rows = torch.nonzero(torch.isinf(best_value)).flatten().tolist()
        raise ValueError(
            f"no feasible page (too few valid candidates or authors for the cap) in requests {rows}"
        )
    return pages[best_index], best_value


def capped_greedy_orders(batch: PageBatch, keys: torch.Tensor) -> torch.Tensor:
    """Fill the slots in order with the highest-keyed allowed candidate: keys [B, K, n] -> orders long [B, K, m].

    Raises ValueError where a request has no feasible page."""
    size, pages, _ = keys.shape
    authors = batch.authors.unsqueeze(1).expand(-1, pages, -1)  # [B, K, n]
    has_author = authors >= 0
    cap = batch.author_cap.view(-1, 1, 1)
    allowed = batch.valid.unsqueeze(1).expand(-1, pages, -1).clone()
    placed_by_author = torch.zeros_like(keys)  # how many placed items share each candidate's author
    orders = []
    for _ in range(batch.num_slots):
        at_cap = (cap > 0) & has_author & (placed_by_author >= cap)
        open_slots = allowed & ~at_cap
        if not bool(open_slots.any(dim=-1).all()):
            raise ValueError(
                "no feasible page (too few valid candidates or authors for the cap) in some request"
            )
        pick = keys.masked_fill(~open_slots, -math.inf).argmax(dim=-1)  # [B, K]
        orders.append(pick)
        allowed.scatter_(-1, pick.unsqueeze(-1), False)
        picked_author = authors.gather(-1, pick.unsqueeze(-1))
        placed_by_author += (authors == picked_author).to(keys.dtype)
    return torch.stack(orders, dim=-1)


def score_sort_orders(batch: PageBatch) -> torch.Tensor:
    """Score-and-sort: candidates by options-weighted upstream score, skipping authors at the cap: long [B, m]."""
    return capped_greedy_orders(batch, weighted_scores(batch).unsqueeze(1)).squeeze(1)


def _enumerated_random_orders(batch: PageBatch, pages: int, generator: torch.Generator) -> torch.Tensor:
    """Exactly uniform feasible pages, drawn among the enumerated pages: long [B, K, m]."""
    every = all_pages(batch.num_candidates, batch.num_slots).to(batch.features.device)
    rows = max(1, EXACT_RANDOM_CELLS // every.shape[0])  # requests per chunk: bounded memory
    parts = (batch.select(slice(start, start + rows)) for start in range(0, batch.size, rows))
    allowed = torch.cat(
        [feasible(part, every.unsqueeze(0).expand(part.size, -1, -1)) for part in parts]
    )  # [B, P]
    if bool((~allowed.any(dim=1)).any()):
        raise ValueError("a request has no feasible page (too few valid candidates or authors for the cap)")
    return every[torch.multinomial(allowed.to(torch.float32), pages, replacement=True, generator=generator)]


def random_orders(
    batch: PageBatch, pages: int, generator: torch.Generator, *, max_rounds: int = 32
) -> torch.Tensor:
    """`pages` feasible pages per request drawn uniformly (see the module docstring): long [B, K, m]."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    device = batch.features.device
    orders = torch.zeros(batch.size, pages, batch.num_slots, dtype=torch.long, device=device)
    left = torch.arange(batch.size, device=device)  # requests with a page still to draw
    pending = torch.ones(batch.size, pages, dtype=torch.bool, device=device)  # [len(left), K]
    rest = batch  # the requests at `left`
    for _ in range(max_rounds):
        # each round redraws only the requests with a page still pending
        keys = torch.rand(left.numel(), pages, batch.num_candidates, generator=generator, device=device)
        keys = keys.masked_fill(~rest.valid.unsqueeze(1), -1.0)
        drawn = keys.topk(batch.num_slots, dim=-1).indices  # a uniform ordered page of valid candidates
        take = pending & feasible(rest, drawn)
        orders[left] = torch.where(take.unsqueeze(-1), drawn, orders[left])
        pending &= ~take
        still = pending.any(dim=1)
        if not bool(still.any()):
            return orders
        left, pending, keys = left[still], pending[still], keys[still]
        rest = batch.select(left)
    if math.perm(batch.num_candidates, batch.num_slots) <= EXACT_RANDOM_PAGES:
        fill = _enumerated_random_orders(rest, pages, generator)
    else:
        fill = capped_greedy_orders(rest, keys)
    orders[left] = torch.where(pending.unsqueeze(-1), fill, orders[left])
    return orders
