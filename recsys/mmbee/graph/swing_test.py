"""Swing against the formula written out as loops, on random small graphs (hypothesis) and hand-checked cases."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.mmbee.graph.config import SwingConfig
from recsys.mmbee.graph.swing import swing, user_weights


def naive_swing(dense: np.ndarray, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """s(i, j) = sum over ordered (u, v), u != v, in U_i & U_j of w_u w_v / (alpha + |I_u & I_v|): plain loops."""
    num_users, num_items = dense.shape
    items_of = [set(np.nonzero(dense[u] > 0)[0]) for u in range(num_users)]
    users_of = [set(np.nonzero(dense[:, i] > 0)[0]) for i in range(num_items)]
    weight = [(beta + len(items_of[u])) ** -gamma for u in range(num_users)]
    out = np.zeros((num_items, num_items))
    for i in range(num_items):
        for j in range(num_items):
            if i == j:
                continue
            common = users_of[i] & users_of[j]
            for u in common:
                for v in common:
                    if u != v:
                        out[i, j] += weight[u] * weight[v] / (alpha + len(items_of[u] & items_of[v]))
    return out


@st.composite
def graphs(draw):
    num_users = draw(st.integers(1, 9))
    num_items = draw(st.integers(1, 7))
    cells = draw(st.lists(st.booleans(), min_size=num_users * num_items, max_size=num_users * num_items))
    gifts = np.array(cells, dtype=np.float64).reshape(num_users, num_items)
    gifts *= draw(st.integers(1, 5))  # weights do not matter to Swing, only > 0
    return gifts


@settings(max_examples=60, deadline=None)
@given(
    dense=graphs(),
    alpha=st.sampled_from([0.5, 1.0, 3.0]),
    beta=st.sampled_from([0.0, 1.0, 5.0]),
    gamma=st.sampled_from([0.0, 0.3, 1.0]),
    block=st.integers(1, 4),
    chunk=st.integers(1, 5),
)
def test_swing_equals_the_formula(dense, alpha, beta, gamma, block, chunk):
    config = SwingConfig(alpha=alpha, beta=beta + 1e-9, gamma=gamma, user_block=block, pair_chunk=chunk)
    got = swing(sp.csr_matrix(dense), config)
    want = naive_swing(dense, alpha, beta + 1e-9, gamma)
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12, atol=0)
    assert got.diagonal().sum() == 0 and (got.data > 0).all()
    np.testing.assert_allclose(got.toarray(), got.toarray().T, rtol=1e-12)


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 12)) < 0.3) * rng.integers(1, 9, (40, 12))
    whole = swing(sp.csr_matrix(dense), SwingConfig(user_block=1000, pair_chunk=1 << 20))
    pieces = swing(sp.csr_matrix(dense), SwingConfig(user_block=3, pair_chunk=7))
    np.testing.assert_allclose(whole.toarray(), pieces.toarray(), rtol=1e-12)


def test_hand_computed_values():
    # users 0,1 share items {0,1}; user 2 has {1,2} and shares only item 1 with them
    dense = np.array([[1, 1, 0], [2, 1, 0], [0, 3, 1]], dtype=float)
    config = SwingConfig(alpha=1.0, beta=1.0, gamma=1.0)
    got = swing(sp.csr_matrix(dense), config).toarray()
    w = 1.0 / 3.0  # every user has 2 items: (1 + 2) ** -1
    assert got[0, 1] == pytest.approx(2 * w * w / (1.0 + 2))  # only pair (0, 1), |I_0 & I_1| = 2
    assert got[1, 2] == 0.0 and got[0, 2] == 0.0  # no pair of users shares items 1 and 2, or 0 and 2


def test_heavy_users_are_damped():
    binary = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 1]], dtype=float))
    weights = user_weights(binary, beta=1.0, gamma=0.3)
    assert weights[0] > weights[1]
    np.testing.assert_allclose(weights, [2.0**-0.3, 4.0**-0.3])
