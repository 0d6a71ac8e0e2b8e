import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.metrics import auc, gauc, grouped_auc, ndcg_at_k, recall_at_k, uauc


def pairwise_auc(labels, scores) -> float:
    """The definition: P(score of a positive > score of a negative), ties one half."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y == 1]
    neg = [s for y, s in zip(labels, scores, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 3)), min_size=2, max_size=30))
def test_auc_is_the_pairwise_probability_with_ties_as_half(pairs):
    labels, scores = zip(*pairs, strict=True)
    if len(set(labels)) < 2:
        assert math.isnan(auc(labels, scores))
    else:
        assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores))


def test_uauc_weights_users_equally_and_gauc_by_impressions():
    # user a: 4 impressions, perfectly ranked (AUC 1); user b: 2 impressions, inverted (AUC 0); user c: no positive
    labels = [1, 0, 0, 0, 1, 0, 0, 0]
    scores = [0.9, 0.1, 0.2, 0.3, 0.1, 0.9, 0.5, 0.4]
    users = ["a", "a", "a", "a", "b", "b", "c", "c"]
    result = grouped_auc(labels, scores, users)
    assert (result.groups, result.total_groups) == (2, 3)
    assert result.uauc == pytest.approx(0.5) == uauc(labels, scores, users)
    assert result.gauc == pytest.approx((4 * 1 + 2 * 0) / 6) == gauc(labels, scores, users)


def test_a_score_that_ranks_within_users_beats_one_that_ranks_only_across_them():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 20)
    labels = rng.random(users.size) < 0.2
    within = labels + rng.normal(0, 0.5, users.size)  # knows who converts, user by user
    across = users / 50 + rng.normal(0, 0.01, users.size)  # knows only which users are active
    assert gauc(labels, within, users) > 0.8 > 0.6 > gauc(labels, across, users)


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="0 or 1"):
        auc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        auc([1, 0], [math.nan, 0.2])
    with pytest.raises(ValueError, match="scores 1"):
        auc([1, 0], [0.1])


def test_recall_and_ndcg_at_k():
    assert recall_at_k([{1, 2}, {3}, set()], [[1, 5, 2], [4, 5, 6], [7]], k=2) == pytest.approx(
        (0.5 + 0.0) / 2
    )
    assert ndcg_at_k([[3, 2, 1, 0]], k=4) == pytest.approx(1.0)
    reversed_gain = (0 + 1 / math.log2(3) + 2 / math.log2(4) + 3 / math.log2(5)) / (
        3 + 2 / math.log2(3) + 1 / math.log2(4)
    )
    assert ndcg_at_k([[0, 1, 2, 3]], k=4) == pytest.approx(reversed_gain)
    assert math.isnan(ndcg_at_k([[0, 0]], k=2))
    with pytest.raises(ValueError):
        recall_at_k([{1}], [[1]], k=0)
