import numpy as np
import pytest

from recsys.data.movielens import Interactions
from recsys.mmbee.movielens.baselines import popularity_scorer
from recsys.mmbee.movielens.protocol import Split, SplitConfig, evaluate, split_interactions, top_k
from recsys.mmbee.movielens.testing import planted_interactions


def pairs_of(array):
    return set(map(tuple, array.tolist()))


@pytest.mark.parametrize("order", ["time", "random"])
def test_split_partitions_every_user_with_recbole_sizes(order):
    data = planted_interactions(num_users=20, per_user=23)
    split = split_interactions(data, SplitConfig(order=order, seed=3))
    train, valid, test = pairs_of(split.train), pairs_of(split.valid), pairs_of(split.test)
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert train | valid | test == pairs_of(np.stack([data.user, data.item], axis=1))
    for user in range(1, 21):  # floor(10% of 23) = 2 each
        assert (split.valid[:, 0] == user).sum() == 2 and (split.test[:, 0] == user).sum() == 2
    assert len(split.train_time) == len(split.train)


def test_temporal_split_respects_time():
    data = planted_interactions(num_users=10, per_user=20)
    shuffled = np.random.default_rng(0).permutation(len(data))  # file order must not matter
    data = Interactions(
        data.user[shuffled],
        data.item[shuffled],
        data.rating[shuffled],
        data.timestamp[shuffled],
        data.user_tokens,
        data.item_tokens,
    )
    split = split_interactions(data)
    time = {
        (u, i): t
        for u, i, t in zip(data.user.tolist(), data.item.tolist(), data.timestamp.tolist(), strict=True)
    }
    for user in range(1, 11):
        times = [
            [time[(u, i)] for u, i in part[part[:, 0] == user].tolist()]
            for part in (split.train, split.valid, split.test)
        ]
        assert max(times[0]) < min(times[1]) and max(times[1]) < min(times[2])


@pytest.mark.parametrize(("n", "sizes"), [(2, (1, 0, 1)), (3, (1, 1, 1)), (10, (8, 1, 1)), (19, (17, 1, 1))])
def test_small_users_follow_recboles_split_sizes(n, sizes):
    data = Interactions(
        np.ones(n, np.int64),
        np.arange(1, n + 1),
        np.ones(n, np.float32),
        np.arange(n),
        np.array(["a"]),
        np.arange(n).astype(str),
    )
    split = split_interactions(data)
    assert (len(split.train), len(split.valid), len(split.test)) == sizes


def tiny_split():
    # user 1: train {1, 2}, test {3, 4}; user 2: train {3}, test {5}; 6 items
    return Split(
        train=np.array([[1, 1], [1, 2], [2, 3]]),
        valid=np.zeros((0, 2), np.int64),
        test=np.array([[1, 3], [1, 4], [2, 5]]),
        num_users=2,
        num_items=6,
        train_time=np.zeros(3, np.int64),
    )


def test_metrics_match_hand_computed_values():
    split = tiny_split()
    # user 1 ranks (training items 1, 2 excluded) 6, 3, 5, 4, ...; user 2 ranks 1, 2, 4, 5, 6
    scores = {1: [0, 9, 9, 5, 2, 3, 8], 2: [0, 9, 8, 9, 7, 6, 1]}
    metrics = evaluate(lambda users: np.array([scores[u] for u in users], float), split, "test", k=2)
    # user 1: top-2 = [6, 3]: 1 hit of 2 -> recall 1/2, precision 1/2, DCG 1/log2(3), IDCG 1 + 1/log2(3)
    # user 2: top-2 = [1, 2] are... excluded? no: user 2's training item is 3, so top-2 = [1, 2]: 0 hits
    ndcg_1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert metrics.recall == pytest.approx((0.5 + 0.0) / 2)
    assert metrics.precision == pytest.approx((0.5 + 0.0) / 2)
    assert metrics.ndcg == pytest.approx((ndcg_1 + 0.0) / 2)
    assert metrics.users == 2


def test_top_k_never_returns_known_items_nor_padding():
    split = tiny_split()
    scores = np.tile(np.arange(7, 0, -1, dtype=float), (2, 1))  # padding column 0 scores highest
    best = top_k(scores, split.matrix("train"), np.array([1, 2]), 3)
    np.testing.assert_array_equal(best, [[3, 4, 5], [1, 2, 4]])


def test_popularity_ranks_by_training_count():
    split = Split(
        train=np.array([[1, 2], [2, 2], [3, 2], [1, 3], [2, 3], [3, 1]]),
        valid=np.zeros((0, 2), np.int64),
        test=np.array([[4, 1]]),
        num_users=4,
        num_items=4,
        train_time=np.zeros(6, np.int64),
    )
    scores = popularity_scorer(split)(np.array([4]))
    np.testing.assert_array_equal(top_k(scores, split.matrix("train"), np.array([4]), 4), [[2, 3, 1, 4]])
