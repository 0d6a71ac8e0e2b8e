import pytest
import torch

from recsys.rerank.simulator.logs import log_pages
from recsys.rerank.simulator.optimum import feasible, score_sort_orders
from recsys.rerank.simulator.world import generate_requests


def test_logs_are_deterministic_by_seed_with_the_documented_shapes():
    requests = generate_requests(20, seed=0, options="random")
    first, again = log_pages(requests, 5, seed=3), log_pages(requests, 5, seed=3)
    other = log_pages(requests, 5, seed=4)
    assert first.orders.shape == (20, 5, 4) and first.rewards.shape == (20, 5)
    assert first.engagement.shape == (20, 5, 4, 3)
    assert torch.equal(first.orders, again.orders) and torch.equal(first.rewards, again.rewards)
    assert not torch.equal(first.rewards, other.rewards)
    assert torch.equal(first.select(slice(2, 4)).orders, first.orders[2:4])


def test_logged_pages_are_feasible_and_rewards_are_the_weighted_observed_engagement():
    requests = generate_requests(100, seed=1, options="random")
    logs = log_pages(requests, 6, seed=0)
    assert feasible(requests.batch, logs.orders).all()
    assert set(logs.engagement[..., 0].unique().tolist()) <= {0.0, 1.0}  # sampled clicks
    assert torch.allclose(logs.rewards, requests.user.weigh(logs.engagement, logs.orders))
    unclicked = logs.engagement[..., 0] == 0
    assert (logs.engagement[..., 1:][unclicked] == 0).all()


def test_temperature_moves_the_policy_between_score_sort_and_random():
    requests = generate_requests(200, seed=2)
    sort = score_sort_orders(requests.batch).unsqueeze(1)

    def share_of_sort(temperature):
        logs = log_pages(requests, 8, seed=0, temperature=temperature, random_share=0.0)
        return (logs.orders == sort).all(dim=-1).float().mean().item()

    assert share_of_sort(1e-4) > 0.99  # near-ties aside, a cold policy is score-and-sort
    assert share_of_sort(0.2) < 0.5
    assert share_of_sort(5.0) < share_of_sort(0.2)
    explored = log_pages(requests, 8, seed=0, temperature=1e-4, random_share=1.0)
    assert (explored.orders == sort).all(dim=-1).float().mean() < 0.05
    with pytest.raises(ValueError, match="temperature"):
        log_pages(requests, 2, seed=0, temperature=0.0)
