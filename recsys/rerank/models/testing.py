"""Random `PageBatch`es for the models' tests and benchmarks (the simulator makes the realistic ones).

Deterministic by the generator; authors are drawn from a small pool so that duplicates are common, and a
share of candidates has no author (-1) or an unknown category, as real requests do.
"""

from __future__ import annotations

import torch

from recsys.data.pages import CATEGORIES, LAYOUTS, OBJECTIVES, OPTIONS, PageBatch


def random_page_batch(
    size: int,
    candidates: int,
    slots: int,
    generator: torch.Generator,
    *,
    author_cap: int = 0,
    authors: int | None = None,
    padding: int = 0,
) -> PageBatch:
    """`size` requests of `candidates` candidates (the last `padding` of each row invalid) for `slots` slots.

    authors: the pool each request's authors come from (default: about half the candidates, so duplicates are
    common); every valid candidate beyond the first `slots` may share an author, but the first `slots` valid
    ones have distinct authors, so a page always fits any cap >= 1."""
    if candidates - padding < slots:
        raise ValueError(f"{candidates - padding} valid candidates cannot fill {slots} slots")
    pool = max(slots, authors if authors is not None else candidates // 2)
    scores = torch.rand(size, candidates, len(OBJECTIVES), generator=generator)
    scores[..., OBJECTIVES.index("satisfaction")] = 2 * scores[..., OBJECTIVES.index("satisfaction")] - 1
    category = torch.randint(-1, len(CATEGORIES), (size, candidates), generator=generator)
    one_hot = torch.nn.functional.one_hot(category.clamp_min(0), len(CATEGORIES)).float()
    one_hot *= (category >= 0).unsqueeze(-1)
    author = torch.randint(-1, pool, (size, candidates), generator=generator)
    author[:, :slots] = torch.randperm(pool, generator=generator)[:slots]  # distinct: any cap >= 1 fits
    shuffle = torch.rand(size, candidates - padding, generator=generator).argsort(dim=-1)
    author[:, : candidates - padding] = author[:, : candidates - padding].gather(1, shuffle)
    valid = torch.ones(size, candidates, dtype=torch.bool)
    valid[:, candidates - padding :] = False
    options = torch.rand(size, len(OPTIONS), generator=generator) + 0.1
    return PageBatch(
        features=torch.cat([scores, one_hot], dim=-1),
        authors=author,
        valid=valid,
        options=options,
        author_cap=torch.full((size,), author_cap, dtype=torch.long),
        layout=torch.randint(0, len(LAYOUTS), (size,), generator=generator),
        num_slots=slots,
    )
