import torch

from recsys.data.pages import CATEGORIES, LAYOUTS, OBJECTIVES, PageBatch, options_vector, page_diversity
from recsys.rerank.simulator.user import PageUser, UserParams, adjacency, examination
from recsys.rerank.simulator.world import generate_requests


def _page(categories, authors=None, ctr=0.3, watch=0.5, satisfaction=0.5, layout="column", diversity=0.0):
    """One request whose candidates have the given categories (names) and equal true attributes."""
    n = len(categories)
    one_hot = torch.zeros(1, n, len(CATEGORIES))
    for i, name in enumerate(categories):
        one_hot[0, i, CATEGORIES.index(name)] = 1.0
    truth = torch.tensor([ctr, watch, satisfaction]).expand(1, n, 3)
    batch = PageBatch(
        features=torch.cat([truth, one_hot], dim=-1),
        authors=torch.tensor([authors if authors is not None else list(range(n))]),
        valid=torch.ones(1, n, dtype=torch.bool),
        options=options_vector(diversity_weight=diversity).unsqueeze(0),
        author_cap=torch.zeros(1, dtype=torch.long),
        layout=torch.tensor([LAYOUTS.index(layout)]),
        num_slots=n,
    )
    return PageUser.from_features(batch)


def _identity(n):
    return torch.arange(n).view(1, 1, n)


def test_examination_decays_with_position_and_the_grid_right_column_is_lower():
    exam = examination(6)
    column, grid = exam[LAYOUTS.index("column")], exam[LAYOUTS.index("grid")]
    assert torch.all(column[1:] < column[:-1])
    assert torch.all(grid[2::2] < grid[:-2:2])  # left column, row by row
    assert torch.all(grid[1::2] < grid[0::2])  # right column below its row's left slot
    assert column[0] == grid[0] == 1.0


def test_grid_adjacency_is_same_row_or_vertical_neighbour():
    grid = adjacency(4)[LAYOUTS.index("grid")]
    expected = {(0, 1), (0, 2), (1, 3), (2, 3)}
    assert {(a, b) for a in range(4) for b in range(a + 1, 4) if grid[a, b]} == expected
    assert torch.equal(grid, grid.T)
    column = adjacency(4)[LAYOUTS.index("column")]
    assert {(a, b) for a in range(4) for b in range(a + 1, 4) if column[a, b]} == {(0, 1), (1, 2), (2, 3)}


def test_click_probability_follows_position_bias_for_identical_items():
    user = _page(["gaming", "music", "food", "sports"])
    click = user.engagement(_identity(4))[0, 0, :, 0]
    assert torch.all(click[1:] < click[:-1])
    assert torch.allclose(click / click[0], examination(4)[0])


def test_fatigue_a_page_of_one_category_is_worth_less_than_with_one_item_swapped():
    same = _page(["pets", "pets", "pets", "pets"])
    swapped = _page(["pets", "pets", "beauty", "pets"])  # beauty has no complement and equal attributes here
    same_clicks = same.engagement(_identity(4))[0, 0, :, 0]
    swapped_clicks = swapped.engagement(_identity(4))[0, 0, :, 0]
    assert same.utility(_identity(4)) < swapped.utility(_identity(4))
    assert swapped_clicks[2] > same_clicks[2]  # the swapped slot is fresh
    assert same_clicks[0] == swapped_clicks[0]  # the first slot has seen nothing yet


def test_fatigue_is_stronger_from_adjacent_slots():
    near = _page(["pets", "pets", "gaming", "beauty"])  # the repeat comes right after the first
    far = _page(["pets", "gaming", "beauty", "pets"])
    params = UserParams()
    near_drop = near.engagement(_identity(4))[0, 0, 1, 0] / examination(4)[0, 1]
    far_drop = far.engagement(_identity(4))[0, 0, 3, 0] / examination(4)[0, 3]
    assert torch.isclose(
        near_drop, torch.tensor(0.3 * torch.exp(torch.tensor(-params.fatigue_adjacent)).item())
    )
    assert torch.isclose(far_drop, torch.tensor(0.3 * torch.exp(torch.tensor(-params.fatigue_far)).item()))


def test_complementary_neighbours_lift_each_other():
    paired = _page(["food", "travel", "pets", "beauty"])
    apart = _page(["food", "pets", "beauty", "travel"])  # not adjacent in a column
    lifted = paired.engagement(_identity(4))[0, 0, :2, 0]
    plain = apart.engagement(_identity(4))[0, 0, :, 0]
    lift = 1.0 + UserParams().complement_lift
    assert torch.allclose(lifted, plain[:2] * lift)
    assert torch.isclose(plain[3] / examination(4)[0, 3], torch.tensor(0.3))  # no lift when apart


def test_a_second_item_by_the_same_author_lowers_satisfaction():
    repeated = _page(["pets", "gaming", "food", "beauty"], authors=[0, 1, 0, 2])
    distinct = _page(["pets", "gaming", "food", "beauty"], authors=[0, 1, 3, 2])
    rep, dis = repeated.engagement(_identity(4))[0, 0], distinct.engagement(_identity(4))[0, 0]
    assert torch.allclose(rep[:, 0], dis[:, 0])  # clicks unchanged
    assert rep[2, 2] < dis[2, 2]
    assert torch.allclose(rep[[0, 1, 3], 2], dis[[0, 1, 3], 2])
    assert repeated.utility(_identity(4)) < distinct.utility(_identity(4))


def test_utility_is_the_weighted_engagement_plus_the_diversity_term():
    requests = generate_requests(32, seed=3, options="random")
    orders = torch.stack(
        [torch.randperm(8, generator=torch.Generator().manual_seed(i))[:4] for i in range(5)]
    )
    orders = orders.unsqueeze(0).expand(32, -1, -1)
    engagement = requests.user.engagement(orders)
    options = requests.batch.options
    expected = (engagement * options[:, None, None, : len(OBJECTIVES)]).sum(dim=(-1, -2))
    expected = expected + options[:, -1:] * page_diversity(requests.batch, orders)
    assert engagement.shape == (32, 5, 4, 3)
    assert torch.allclose(requests.user.utility(orders), expected, atol=1e-6)
    assert (options[:, -1] > 0).any()  # the diversity term is exercised


def test_sampled_reward_is_unbiased_for_the_utility():
    requests = generate_requests(4, seed=1, options="random")
    orders = torch.arange(4).view(1, 1, 4).expand(4, 2000, 4)  # 2000 draws of the same page
    generator = torch.Generator().manual_seed(0)
    rewards = requests.user.sample_reward(orders, generator)
    expected = requests.user.utility(orders[:, :1]).squeeze(1)
    stderr = rewards.std(dim=1) / 2000**0.5
    assert torch.all((rewards.mean(dim=1) - expected).abs() < 4 * stderr + 1e-6)
    clicks = requests.user.sample_engagement(orders, generator)[..., 0]
    assert set(clicks.unique().tolist()) <= {0.0, 1.0}


def test_hidden_taste_scales_clicks_of_its_category_only():
    user = _page(["pets", "gaming", "food", "beauty"])
    boosted = PageUser(**{**user.__dict__, "taste": user.taste.clone()})
    boosted.taste[0, CATEGORIES.index("gaming")] = 2.0
    base, more = user.engagement(_identity(4))[0, 0, :, 0], boosted.engagement(_identity(4))[0, 0, :, 0]
    assert torch.isclose(more[1], 2 * base[1])
    assert torch.allclose(more[[0, 2, 3]], base[[0, 2, 3]])
