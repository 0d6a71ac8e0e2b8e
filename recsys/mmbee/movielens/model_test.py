from dataclasses import replace

import numpy as np
import pytest
import torch

from recsys.mmbee.graph.config import GraphCLConfig
from recsys.mmbee.movielens.baselines import LightGCNConfig, LightGCNRecommender
from recsys.mmbee.movielens.expansions import build_expansions, recency_rank, recent_items
from recsys.mmbee.movielens.model import GIEConfig, GIERecommender, holdout_split
from recsys.mmbee.movielens.protocol import evaluate, split_interactions, top_k
from recsys.mmbee.movielens.testing import planted_interactions
from recsys.mmbee.movielens.train import TrainConfig, fit

TRAIN = TrainConfig(max_epochs=24, batch_size=128, lr=0.03, eval_every=4, patience=10)
TINY_GIE = GIEConfig(
    embedding_dim=16,
    num_layers=2,
    neighbours=5,
    graphcl=GraphCLConfig(dim=16, layers=2, epochs=2, batch_size=256),
)


@pytest.fixture(scope="module")
def split():
    return split_interactions(planted_interactions(num_users=60, num_items=90, per_user=20))


def random_recall(split, k=10):
    """Expected Recall@k of a uniformly random ranking: k / candidates per user, averaged."""
    known = np.bincount(np.concatenate([split.train[:, 0], split.valid[:, 0]]), minlength=split.num_users + 1)
    users = np.unique(split.test[:, 0])
    return float(np.mean(k / (split.num_items - known[users])))


def test_recency_rank_and_recent_items(split):
    rank = recency_rank(split)
    user = split.train[:, 0] == 7
    times = split.train_time[user]
    assert rank[user][np.argmax(times)] == 0 and rank[user][np.argmin(times)] == user.sum() - 1
    ids, weights = recent_items(split, 4, tau=2.0)
    newest_first = split.train[user][np.argsort(-times)][:4, 1]
    np.testing.assert_array_equal(ids[7], newest_first)
    np.testing.assert_allclose(weights[7], np.exp(-np.arange(4) / 2.0), rtol=1e-6)
    assert (ids[0] == 0).all()


def test_holdout_targets_are_each_users_latest_and_partition_train(split):
    past, targets = holdout_split(split, 0.25)
    assert len(past.train) + len(targets) == len(split.train)
    assert not ({tuple(p) for p in past.train.tolist()} & {tuple(p) for p in targets.tolist()})
    time = dict(zip(map(tuple, split.train.tolist()), split.train_time.tolist(), strict=True))
    for user in (1, 30, 60):
        old = [time[tuple(p)] for p in past.train[past.train[:, 0] == user].tolist()]
        new = [time[tuple(p)] for p in targets[targets[:, 0] == user].tolist()]
        assert len(new) == 4 and max(old) < min(new)  # 25% of 16 training pairs


def test_expansions_hold_only_training_information(split):
    expansions = build_expansions(split, k=5)
    train = split.matrix("train")
    own = expansions.indices["u2i2u2i"]
    for user in range(1, split.num_users + 1):
        assert not set(own[user][own[user] > 0]) & set(train[user].indices)  # minus the user's own items
    assert (expansions.indices["u2i2u"][np.arange(1, 61)] != np.arange(1, 61)[:, None]).all()


def test_full_ranking_path_equals_the_training_path(split):
    torch.manual_seed(0)
    model = GIERecommender(split, replace(TINY_GIE, graphcl=None))
    with torch.no_grad():
        model.backbone.embedding.weight.normal_(0, 0.5)
        for parameter in (model.value, model.empty, model.item_out, model.item_prior_scale):
            parameter.normal_(0, 0.3)
    users = np.arange(1, 61)
    full = model.scorer()(users)  # [60, I + 1]
    items = torch.randint(1, split.num_items + 1, (60, 7))
    with torch.no_grad():
        pairs = model.score_pairs(model.rank_graph, torch.from_numpy(users), items)
    np.testing.assert_allclose(
        full[np.arange(60)[:, None], items.numpy()], pairs.numpy(), rtol=1e-4, atol=1e-5
    )


def test_candidate_is_masked_out_of_its_users_lists(split):
    """Scoring item i for user u must not depend on i's embedding *as a neighbour*: changing what the u2i list
    would pool for i itself changes nothing when i is in that list."""
    model = GIERecommender(split, replace(TINY_GIE, graphcl=None, user_metapaths=("u2i",), item_metapaths=()))
    with torch.no_grad():
        model.backbone.embedding.weight.normal_(0, 0.5)
        model.value.normal_(0, 0.3)
    g = model.rank_graph
    user = torch.tensor([5])
    listed = g.user_lists[5, 0, :3]  # [3] items of the user's list, scored as candidates
    full = model.scorer()(np.array([5]))[0]
    with torch.no_grad():
        expected = model.score_pairs(g, user, listed[None])[0]
    np.testing.assert_allclose(full[listed.numpy()], expected.numpy(), rtol=1e-5)
    with torch.no_grad():
        unmasked = GIERecommender(split, replace(model.config, mask_candidate=False))
        unmasked.load_state_dict(model.state_dict())
        assert not torch.allclose(
            unmasked.score_pairs(unmasked.rank_graph, user, listed[None]), expected[None]
        )


@pytest.mark.parametrize("name", ["lightgcn", "gie"])
def test_models_beat_random_and_never_recommend_training_items(split, name):
    torch.manual_seed(0)
    if name == "lightgcn":
        model = LightGCNRecommender(split, LightGCNConfig(embedding_dim=16))
        result = fit(model, split, TRAIN, seed=0)
    else:
        model = GIERecommender(split, replace(TINY_GIE, graphcl=None))
        result = fit(model, split, TRAIN, seed=0, positives=model.positives)
    assert result.best_epoch > 0
    model.train(False)
    metrics = evaluate(model.scorer(), split, "test")
    assert metrics.recall > 2 * random_recall(split), (metrics, random_recall(split))
    users = np.arange(1, 61)
    recommended = top_k(model.scorer()(users), split.matrix("train"), users, 10)
    train = split.matrix("train")
    assert not any(set(recommended[i]) & set(train[u].indices) for i, u in enumerate(users))
