import time

import pytest
import torch

from recsys.data.pages import CATEGORIES, FEATURES, LAYOUTS, OBJECTIVES, OPTIONS, options_vector
from recsys.rerank.simulator.optimum import feasible, random_orders
from recsys.rerank.simulator.world import CATEGORY_PROFILES, WorldParams, generate_requests, with_taste


def test_same_seed_same_requests_other_seed_other_requests():
    first, again, other = (generate_requests(16, seed=s, options="random") for s in (7, 7, 8))
    for name in ("features", "authors", "options", "author_cap", "layout"):
        assert torch.equal(getattr(first.batch, name), getattr(again.batch, name))
    assert torch.equal(first.user.ctr, again.user.ctr)
    assert not torch.equal(first.batch.features, other.batch.features)


def test_shapes_and_ranges():
    requests = generate_requests(64, 8, 4, seed=0, options="random")
    batch, user = requests.batch, requests.user
    assert batch.features.shape == (64, 8, len(FEATURES))
    assert batch.options.shape == (64, len(OPTIONS))
    assert batch.authors.shape == batch.valid.shape == (64, 8) and batch.valid.all()
    assert batch.num_slots == 4 and user.taste.shape == (64, len(CATEGORIES))
    assert user.ctr.min() >= 0.02 and user.ctr.max() <= 0.6
    assert user.watch.min() >= 0 and user.watch.max() <= 1
    assert user.satisfaction.min() >= -1 and user.satisfaction.max() <= 1
    assert torch.allclose(batch.features[..., len(OBJECTIVES) :].sum(dim=-1), torch.ones(64, 8))
    assert set(batch.layout.tolist()) == {0, 1}


def test_features_are_the_truth_plus_small_noise():
    requests = generate_requests(2000, seed=1)
    truth = torch.stack([requests.user.ctr, requests.user.watch, requests.user.satisfaction], dim=-1)
    noise = requests.batch.features[..., : len(OBJECTIVES)] - truth
    assert abs(noise.std().item() - WorldParams().feature_noise) < 0.002
    assert noise.mean().abs() < 0.002


def test_click_bait_categories_have_high_ctr_and_low_satisfaction():
    requests = generate_requests(3000, seed=2)
    category = requests.batch.features[..., len(OBJECTIVES) :].argmax(dim=-1)
    ctr = {name: requests.user.ctr[category == i].mean() for i, name in enumerate(CATEGORIES)}
    sat = {name: requests.user.satisfaction[category == i].mean() for i, name in enumerate(CATEGORIES)}
    bait = max(CATEGORY_PROFILES, key=lambda name: CATEGORY_PROFILES[name][0])
    assert ctr[bait] == max(ctr.values()) and sat[bait] == min(sat.values())
    # the quality shared by the attributes correlates them
    assert (
        torch.corrcoef(torch.stack([requests.user.ctr.flatten(), requests.user.watch.flatten()]))[0, 1] > 0.2
    )


def test_default_options_and_random_options():
    default = generate_requests(8, seed=0)
    assert torch.equal(default.batch.options, options_vector().expand(8, -1))
    options = generate_requests(4000, seed=0, options="random").batch.options
    assert torch.allclose(options[:, : len(OBJECTIVES)].sum(dim=1), torch.full((4000,), 2.5))
    assert (options >= 0).all()
    diversity = options[:, -1]
    assert abs((diversity == 0).float().mean().item() - 0.5) < 0.03 and diversity.max() <= 0.5


def test_author_caps_on_a_share_of_requests_and_always_feasible():
    requests = generate_requests(2000, seed=4)
    cap = requests.batch.author_cap
    assert set(cap.unique().tolist()) == {0, 1}
    assert abs(cap.float().mean().item() - WorldParams().author_cap_share) < 0.04
    distinct = torch.tensor([len(set(row)) for row in requests.batch.authors.tolist()])
    assert (distinct[cap == 1] >= 4).all()
    assert (distinct[cap == 0] <= 4).all() and (distinct < 8).all()  # n // 2 authors: duplicates happen
    pages = random_orders(requests.batch, 2, torch.Generator().manual_seed(0))
    assert feasible(requests.batch, pages).all()
    assert (generate_requests(200, seed=4, author_caps=False).batch.author_cap == 0).all()


def test_layout_argument_and_validation():
    assert (generate_requests(8, seed=0, layout="grid").batch.layout == LAYOUTS.index("grid")).all()
    with pytest.raises(ValueError, match="layout"):
        generate_requests(8, seed=0, layout="carousel")
    with pytest.raises(ValueError, match="num_slots"):
        generate_requests(8, 4, 5, seed=0)


def test_select_to_and_taste():
    requests = generate_requests(10, seed=0)
    rows = torch.tensor([3, 7])
    picked = requests.select(rows)
    assert torch.equal(picked.batch.features, requests.batch.features[rows])
    assert torch.equal(picked.user.ctr, requests.user.ctr[rows]) and picked.user.batch is picked.batch
    moved = requests.to("cpu")
    assert moved.user.batch is moved.batch and torch.equal(moved.user.ctr, requests.user.ctr)
    taste = torch.linspace(0.5, 2.0, len(CATEGORIES))
    assert torch.equal(with_taste(requests, taste).user.taste[4], taste)
    assert torch.equal(
        generate_requests(10, seed=0, taste=taste).user.taste, with_taste(requests, taste).user.taste
    )


def test_twenty_thousand_requests_in_about_a_second():
    start = time.perf_counter()
    generate_requests(20_000, seed=0)
    assert time.perf_counter() - start < 1.5
