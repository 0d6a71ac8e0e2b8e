"""GraphCL: the loss goes down, planted communities end up closer than random pairs, runs are reproducible."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.mmbee.graph.config import GraphCLConfig
from recsys.mmbee.graph.graphcl import normalized_adjacency, train_graphcl
from recsys.mmbee.graph.metapaths import gift_matrix

CONFIG = GraphCLConfig(dim=16, epochs=15, batch_size=64, lr=0.05, seed=0)


def planted_graph(seed: int = 0, users_per_side: int = 30, items_per_side: int = 6, noise: float = 0.05):
    """Two communities: users 1..30 gift items 1..6, users 31..60 gift items 7..12, a few cross edges."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(1, 2 * users_per_side + 1):
        side = (u - 1) // users_per_side
        own = side * items_per_side + 1 + rng.choice(items_per_side, 3, replace=False)
        users += [u] * 3
        items += own.tolist()
        if rng.random() < noise:
            users.append(u)
            items.append((1 - side) * items_per_side + 1 + rng.integers(items_per_side))
    matrix = gift_matrix(
        np.array(users),
        np.array(items),
        rng.integers(1, 5, len(users)).astype(float),
        2 * users_per_side,
        2 * items_per_side,
    )
    user_side = np.r_[-1, np.arange(2 * users_per_side) // users_per_side]  # [U+1], -1 for the unknown row
    item_side = np.r_[-1, np.arange(2 * items_per_side) // items_per_side]
    return matrix, user_side, item_side


def cosine(theta: np.ndarray) -> np.ndarray:
    z = theta / np.linalg.norm(theta, axis=1, keepdims=True).clip(1e-12)
    return z @ z.T


def same_vs_random(theta: np.ndarray, side: np.ndarray) -> tuple[float, float]:
    sims = cosine(theta)[1:, 1:]
    same = side[1:, None] == side[None, 1:]
    off = ~np.eye(len(sims), dtype=bool)
    return float(sims[same & off].mean()), float(sims[off].mean())


@pytest.fixture(scope="module")
def trained():
    matrix, user_side, item_side = planted_graph()
    return matrix, user_side, item_side, train_graphcl(matrix, CONFIG)


def test_loss_goes_down(trained):
    result = trained[3]
    assert len(result.losses) == CONFIG.epochs
    assert result.losses[-1] < 0.8 * result.losses[0]
    assert result.ce_losses[-1] < result.ce_losses[0] and result.nce_losses[-1] < result.nce_losses[0]


def test_same_community_nodes_are_closer_than_random_pairs(trained):
    _, user_side, item_side, result = trained
    for theta, side in ((result.theta_users, user_side), (result.theta_authors, item_side)):
        same, everyone = same_vs_random(theta, side)
        assert same > everyone + 0.3, (same, everyone)


def test_shapes_reserved_row_and_reproducibility(trained):
    matrix, _, _, result = trained
    assert result.theta_users.shape == (61, 16) and result.theta_authors.shape == (13, 16)
    assert result.theta_users.dtype == np.float32
    assert not result.theta_users[0].any() and not result.theta_authors[0].any()
    again = train_graphcl(matrix, GraphCLConfig(dim=16, epochs=2, batch_size=64, lr=0.05, seed=0))
    twice = train_graphcl(matrix, GraphCLConfig(dim=16, epochs=2, batch_size=64, lr=0.05, seed=0))
    other = train_graphcl(matrix, GraphCLConfig(dim=16, epochs=2, batch_size=64, lr=0.05, seed=1))
    np.testing.assert_array_equal(again.theta_users, twice.theta_users)
    assert not np.array_equal(again.theta_users, other.theta_users)


def test_adjacency_is_symmetric_normalised():
    matrix = sp.csr_matrix(np.array([[0, 0, 0], [0, 1, 1], [0, 0, 2]], dtype=float))
    adj = normalized_adjacency(matrix).to_dense().numpy()  # nodes: users 0..2, items 3..5
    np.testing.assert_allclose(adj, adj.T)
    assert adj[1, 4] == pytest.approx(1 / np.sqrt(2 * 1)) and adj[1, 5] == pytest.approx(1 / np.sqrt(2 * 2))
    assert not adj[0].any() and not adj[3].any()  # the unknown user and item are isolated
