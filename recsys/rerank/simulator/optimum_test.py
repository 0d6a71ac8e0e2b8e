import itertools
import time
from collections import Counter

import pytest
import torch

from recsys.rerank.simulator.optimum import (
    all_pages,
    brute_force_optimum,
    capped_greedy_orders,
    feasible,
    random_orders,
    score_sort_orders,
    weighted_scores,
)
from recsys.rerank.simulator.world import generate_requests


def test_all_pages_enumerates_every_ordered_page_once_and_refuses_huge_spaces():
    pages = all_pages(5, 3)
    assert pages.shape == (60, 3)
    assert len({tuple(p) for p in pages.tolist()}) == 60
    assert all(len(set(p)) == 3 for p in pages.tolist())
    with pytest.raises(ValueError, match="exceeds the limit"):
        all_pages(20, 5)  # 1 860 480 pages


def test_brute_force_matches_a_plain_loop_over_pages():
    requests = generate_requests(3, 6, 3, seed=5, options="random")
    orders, values = brute_force_optimum(requests, chunk=17)
    for row in range(3):
        one = requests.select(slice(row, row + 1))
        candidates = torch.tensor(list(itertools.permutations(range(6), 3))).unsqueeze(0)
        utility = one.user.utility(candidates).masked_fill(~feasible(one.batch, candidates), -1e9)
        assert torch.isclose(values[row], utility.max())
        assert torch.isclose(one.user.utility(orders[row].view(1, 1, 3)).squeeze(), values[row])


def test_brute_force_beats_sort_and_random_on_every_request_and_keeps_caps():
    requests = generate_requests(200, seed=0)
    orders, values = brute_force_optimum(requests)
    assert orders.shape == (200, 4) and values.shape == (200,)
    assert feasible(requests.batch, orders.unsqueeze(1)).all()
    sort = requests.user.utility(score_sort_orders(requests.batch).unsqueeze(1)).squeeze(1)
    random = requests.user.utility(random_orders(requests.batch, 8, torch.Generator().manual_seed(0)))
    assert (values >= sort - 1e-6).all()
    assert (values.unsqueeze(1) >= random - 1e-6).all()
    capped = requests.batch.author_cap == 1
    assert capped.any()
    page_authors = requests.batch.authors.gather(1, orders)[capped]
    assert all(len(set(row)) == 4 for row in page_authors.tolist())


def test_optimum_is_not_the_sort_on_a_clear_share_of_requests():
    requests = generate_requests(200, seed=1)
    orders, _ = brute_force_optimum(requests)
    differs = (orders != score_sort_orders(requests.batch)).any(dim=1).float().mean()
    assert differs > 0.5


def test_brute_force_refuses_a_request_without_feasible_page():
    requests = generate_requests(2, seed=0, author_caps=False)
    requests.batch.valid[1, 3:] = False  # 3 valid candidates for 4 slots
    with pytest.raises(ValueError, match=r"requests \[1\]"):
        brute_force_optimum(requests)


def test_brute_force_is_vectorised():
    requests = generate_requests(500, seed=0)  # 840 000 pages; 2000 requests take about 2.5 s on 2 cores
    start = time.perf_counter()
    brute_force_optimum(requests)
    assert time.perf_counter() - start < 5.0


def test_score_sort_takes_the_top_weighted_scores_unless_an_author_is_at_the_cap():
    requests = generate_requests(300, seed=2)
    batch = requests.batch
    sort = score_sort_orders(batch)
    top = weighted_scores(batch).topk(4, dim=1).indices
    free = batch.author_cap == 0
    assert torch.equal(sort[free], top[free])
    assert feasible(batch, sort.unsqueeze(1)).all()
    assert not torch.equal(sort[~free], top[~free])  # the cap binds somewhere


def test_capped_greedy_never_places_padding_or_a_candidate_twice_and_refuses_infeasible_requests():
    requests = generate_requests(50, seed=3)
    requests.batch.valid[:, 0] = False
    requests.batch.author_cap[:] = 2
    keys = torch.randn(50, 6, 8, generator=torch.Generator().manual_seed(0))
    orders = capped_greedy_orders(requests.batch, keys)
    assert (orders != 0).all()
    assert all(len(set(page)) == 4 for page in orders.flatten(0, 1).tolist())
    assert feasible(requests.batch, orders).all()
    requests.batch.author_cap[7] = 1
    requests.batch.authors[7] = torch.tensor(
        [0, 1, 1, 1, 2, 2, 2, 3]
    )  # author 0 only on the padded candidate
    with pytest.raises(ValueError, match="no feasible page"):
        capped_greedy_orders(requests.batch, keys)


def test_random_orders_are_uniform_over_feasible_pages():
    requests = generate_requests(1, 4, 2, seed=0, author_caps=False)
    requests.batch.authors[0] = torch.tensor([0, 0, 1, 2])
    requests.batch.author_cap[0] = 1
    pages = random_orders(requests.batch, 6000, torch.Generator().manual_seed(0))[0]
    counts = Counter(map(tuple, pages.tolist()))
    assert (0, 1) not in counts and (1, 0) not in counts  # same author twice
    assert len(counts) == 10  # 4 P 2 = 12 pages, 2 infeasible
    assert max(counts.values()) < 1.2 * 600 and min(counts.values()) > 0.8 * 600


def test_random_orders_by_rejection_for_large_pages_stay_feasible_and_deterministic():
    requests = generate_requests(20, 20, 5, seed=0)  # 20 P 5 pages: too many to enumerate
    first = random_orders(requests.batch, 4, torch.Generator().manual_seed(1))
    again = random_orders(requests.batch, 4, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert feasible(requests.batch, first).all()
