import torch

from recsys.data.pages import OBJECTIVES, page_diversity
from recsys.rerank.models.config import TINY
from recsys.rerank.models.evaluator import PageEvaluator
from recsys.rerank.models.testing import random_page_batch


def _setup():
    torch.manual_seed(0)
    evaluator = PageEvaluator(TINY).eval()
    batch = random_page_batch(2, 8, 4, torch.Generator().manual_seed(0))
    orders = torch.tensor(
        [[[0, 1, 2, 3], [3, 2, 1, 0], [4, 5, 6, 7]], [[7, 6, 5, 4], [0, 2, 4, 6], [1, 3, 5, 7]]]
    )
    return evaluator, batch, orders


def test_utility_is_weighted_engagement_plus_diversity():
    evaluator, batch, orders = _setup()
    with torch.no_grad():
        engagement = evaluator.engagement(batch, orders)
        utility = evaluator.utility(batch, orders)
    assert engagement.shape == (2, 3, 4, len(OBJECTIVES)) and utility.shape == (2, 3)
    expected = torch.zeros(2, 3)
    for row in range(2):
        for page in range(3):
            for objective in range(len(OBJECTIVES)):
                expected[row, page] += (
                    batch.options[row, objective] * engagement[row, page, :, objective].sum()
                )
    expected += batch.options[:, -1:] * page_diversity(batch, orders)
    torch.testing.assert_close(utility, expected)


def test_engagement_depends_on_position_and_neighbours():
    evaluator, batch, orders = _setup()
    with torch.no_grad():
        base = evaluator.engagement(batch, orders[:, :1])  # [0, 1, 2, 3] / [7, 6, 5, 4]
        moved = evaluator.engagement(batch, orders[:, :1, [1, 0, 2, 3]])  # items 0 and 1 swap slots
        neighbour = orders[:, :1].clone()
        neighbour[..., 3] = torch.tensor([[5], [0]])  # only the last slot's item changes
        changed = evaluator.engagement(batch, neighbour)
    assert not torch.allclose(moved[..., 1, :], base[..., 0, :])  # same item, other slot: position bias
    assert not torch.allclose(changed[..., 0, :], base[..., 0, :])  # slot 0 sees its neighbours
