"""The five metapath lists against dense products ranked by plain Python sorting; ties, exclusion, padding."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.batches import AUTHOR_METAPATHS, METAPATHS, USER_METAPATHS
from recsys.mmbee.graph.config import ExpansionConfig
from recsys.mmbee.graph.metapaths import (
    _kth_largest,
    gift_matrix,
    metapath_neighbours,
    round_scores,
    top_k_rows,
)


def brute_top_k(scores: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank each row of a dense score matrix by (-rounded score, column), skipping excluded/non-positive cells."""
    indices = np.zeros((scores.shape[0], k), dtype=np.int64)
    values = np.zeros((scores.shape[0], k), dtype=np.float32)
    for r in range(scores.shape[0]):
        cells = [(float(round_scores(s)), c) for c, s in enumerate(scores[r]) if not excluded[r, c]]
        ranked = sorted((cell for cell in cells if cell[0] > 0), key=lambda cell: (-cell[0], cell[1]))[:k]
        for j, (score, c) in enumerate(ranked):
            indices[r, j], values[r, j] = c, score
    return indices, values


def reference(dense: np.ndarray, similarity: np.ndarray, k: int) -> dict:
    own_users = np.eye(dense.shape[0], dtype=bool)
    own_items = np.eye(dense.shape[1], dtype=bool)
    co_users = dense @ dense.T
    others = np.where(own_users, 0.0, co_users)
    return {
        "u2a2u": brute_top_k(co_users, k, own_users),
        "u2a2u2a": brute_top_k(others @ dense, k, dense > 0),
        "u2a2a": brute_top_k(dense @ similarity, k, np.zeros_like(dense, dtype=bool)),
        "a2a": brute_top_k(similarity, k, own_items),
        "a2u2a": brute_top_k(dense.T @ dense, k, own_items),
    }


def random_graph(seed: int, num_users: int = 14, num_items: int = 9, density: float = 0.25, integer=True):
    rng = np.random.default_rng(seed)
    dense = np.zeros((num_users + 1, num_items + 1))
    weights = rng.integers(1, 4, (num_users, num_items)) if integer else rng.random((num_users, num_items))
    dense[1:, 1:] = (rng.random((num_users, num_items)) < density) * weights
    similarity = np.zeros((num_items + 1, num_items + 1))
    upper = np.triu(
        rng.integers(0, 3, (num_items, num_items)) * (rng.random((num_items, num_items)) < 0.4), 1
    )
    similarity[1:, 1:] = upper + upper.T  # symmetric, zero diagonal, many ties
    return dense, similarity


@pytest.mark.parametrize("seed,integer", [(0, True), (1, True), (2, False), (3, False)])
def test_every_metapath_matches_brute_force(seed, integer):
    dense, similarity = random_graph(seed, integer=integer)
    config = ExpansionConfig(k=4, row_batch=3)  # several row batches
    got = metapath_neighbours(sp.csr_matrix(dense), sp.csr_matrix(similarity), config)
    want = reference(dense, similarity, k=4)
    assert set(got) == set(METAPATHS)
    for name in METAPATHS:
        np.testing.assert_array_equal(got[name][0], want[name][0], err_msg=name)
        np.testing.assert_array_equal(got[name][1], want[name][1], err_msg=name)
        rows = dense.shape[0] if name in USER_METAPATHS else dense.shape[1]
        assert got[name][0].shape == (rows, 4) and got[name][0].dtype == np.int64
        assert got[name][1].dtype == np.float32


def test_u2a2u2a_excludes_the_users_own_items_and_pads():
    # user 1 gifted item 1; user 2 gifted items 1 and 2; user 3 gifted item 3 only (no co-gifter)
    matrix = gift_matrix(np.array([1, 2, 2, 3]), np.array([1, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 1.0]), 3, 3)
    got = metapath_neighbours(matrix, config=ExpansionConfig(k=3))
    indices, scores = got["u2a2u2a"]
    assert indices[1].tolist() == [2, 0, 0]  # item 1 is user 1's own: only item 2 (via user 2) remains
    assert scores[1, 0] == pytest.approx(1.0 * 2.0 * 3.0)  # (R R^T)[1, 2] * R[2, 2]
    assert indices[2].tolist() == [0, 0, 0]  # user 1 only brings item 1, which user 2 has
    assert indices[3].tolist() == [0, 0, 0] and indices[0].tolist() == [0, 0, 0]
    assert got["u2a2u"][0][1].tolist() == [2, 0, 0] and got["u2a2u"][0][3].tolist() == [0, 0, 0]
    for name in AUTHOR_METAPATHS:
        assert got[name][0][0].tolist() == [0, 0, 0]  # the unknown item has no neighbours
        assert (got[name][0][got[name][1] == 0] == 0).all()  # padding is index 0 with score 0


def test_ties_break_by_index_and_exclusion_drops_entries():
    rows = sp.csr_matrix(np.array([[0.0, 2.0, 5.0, 0.0, 5.0, 1.0], [3.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
    indices, scores = top_k_rows(rows, 4)
    assert indices.tolist() == [[2, 4, 1, 5], [0, 0, 0, 0]]
    assert scores.tolist() == [[5, 5, 2, 1], [3, 0, 0, 0]]
    exclude = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    indices, _ = top_k_rows(rows, 2, exclude=exclude)
    assert indices.tolist() == [[4, 1], [0, 0]]


def test_round_scores_absorbs_summation_order():
    rng = np.random.default_rng(0)
    terms = rng.random((1000, 50)) * 10.0 ** rng.integers(-6, 6, (1000, 1))
    forward = terms.sum(axis=1)
    backward = np.array([sum(reversed(row.tolist())) for row in terms])
    assert (forward != backward).any()  # the float sums really differ in the last bits
    assert (round_scores(forward) == round_scores(backward)).mean() == 1.0
    rounded = round_scores(forward)
    assert (np.abs(rounded - forward) <= forward * 2.0**-30).all()
    assert (round_scores(rounded) == rounded).all()  # idempotent
    order = np.argsort(forward)
    assert (np.diff(round_scores(forward[order])) >= 0).all()  # monotone


def test_gift_matrix_sums_duplicates_and_rejects_reserved_ids():
    matrix = gift_matrix(np.array([1, 1, 2]), np.array([2, 2, 1]), np.array([1.0, 2.5, 0.0]), 2, 2)
    assert matrix.shape == (3, 3) and matrix[1, 2] == 3.5 and matrix.nnz == 1  # zero-gift edge dropped
    with pytest.raises(ValueError, match="reserved"):
        gift_matrix(np.array([0]), np.array([1]), np.array([1.0]), 2, 2)
    with pytest.raises(ValueError, match="items"):
        gift_matrix(np.array([1]), np.array([3]), np.array([1.0]), 2, 2)


@pytest.mark.parametrize("budget", [1, 7, 40, 1 << 22])
def test_kth_largest_threshold_in_blocks(budget):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 12, 30)
    scores = rng.integers(1, 6, counts.sum()).astype(float)  # many ties
    starts = np.cumsum(counts) - counts
    got = _kth_largest(scores, starts, counts, 3, budget=budget)
    for r in range(30):
        row = np.sort(scores[starts[r] : starts[r] + counts[r]])[::-1]
        assert got[r] == (row[2] if counts[r] > 3 else -np.inf)


def test_rows_with_many_candidates_keep_exact_ties():
    rng = np.random.default_rng(1)
    dense = rng.integers(0, 3, (6, 200)).astype(float)  # 0 (absent), 1 or 2: dozens of ties per row
    indices, scores = top_k_rows(sp.csr_matrix(dense), 5)
    for r in range(6):
        want = sorted((c for c in range(200) if dense[r, c] > 0), key=lambda c: (-dense[r, c], c))[:5]
        assert indices[r].tolist() == want and scores[r].tolist() == [dense[r, c] for c in want]
