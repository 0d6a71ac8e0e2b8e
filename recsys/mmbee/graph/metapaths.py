"""Metapath expansion: top-K neighbour lists of every user and item from sparse products of the interaction graph.

R is the user x item weight matrix (MMBee: viewer x streamer gift weights, `gift_matrix`); row and column 0 are
the reserved "unknown" index and stay empty, so users are 1..U and items 1..A as in `recsys.data.batches`.
S is the item x item Swing matrix (`swing.py`). The five expansions of `recsys.data.batches.METAPATHS`:

    user side   u2a2u    R R^T, diagonal removed            users sharing the user's items
                u2a2u2a  (R R^T) R, minus the user's items  items of those users the user has not touched yet
                u2a2a    R S                                Swing-similar items of the user's items
    item side   a2a      S (diagonal is already zero)       Swing-similar items
                a2u2a    R^T R, diagonal removed            items sharing the item's users

In (R R^T) R the user's own row of R R^T is removed first, as in u2a2u ("those users" are the others).
Scores are the products' entries, weights included (a heavy gifter counts more), float64 until ranked.

Ranking, the same everywhere (`top_k_rows`, also what the Spark job maps over its partitions):
1. scores are rounded to `score_bits` significant bits (`round_scores`): a sum of the same terms taken in
   another order (Spark's shuffles) differs in the last bits of a float64, and rounding to 2**-30 relative makes
   both rank and report the same value. Our choice; a sum that lands within about 1e-16 of a rounding boundary
   could still round apart (probability about 1e-6 per score), and then only ties at that exact value reorder.
2. entries that are not positive after rounding, or are excluded, are dropped;
3. order by score descending, then neighbour index ascending (deterministic ties);
4. the first K are kept; rows with fewer than K are padded with index 0 and score 0.

Outputs are `indices` int64 [N+1, K] and `scores` float32 [N+1, K] per metapath; row 0 is all padding.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys.mmbee.graph.config import ExpansionConfig
from recsys.mmbee.graph.swing import swing

logger = logging.getLogger(__name__)

Neighbours = dict[str, tuple[np.ndarray, np.ndarray]]
"""metapath name -> (indices int64 [N+1, K], scores float32 [N+1, K])."""


def gift_matrix(
    users: np.ndarray, items: np.ndarray, weights: np.ndarray, num_users: int, num_items: int
) -> sp.csr_matrix:
    """The user x item weight matrix R, float64 CSR [num_users + 1, num_items + 1] (duplicate edges summed,
    non-positive weights dropped). Ids must be in 1..num_users and 1..num_items: 0 is the reserved unknown."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if not (users.shape == items.shape == weights.shape) or users.ndim != 1:
        shapes = (users.shape, items.shape, weights.shape)
        raise ValueError(f"users, items, weights: expected equal 1-D shapes, got {shapes}")
    if len(users) and (users.min() < 1 or users.max() > num_users):
        raise ValueError(
            f"users: ids must be in 1..{num_users} (0 is reserved), got {users.min()}..{users.max()}"
        )
    if len(items) and (items.min() < 1 or items.max() > num_items):
        raise ValueError(
            f"items: ids must be in 1..{num_items} (0 is reserved), got {items.min()}..{items.max()}"
        )
    keep = weights > 0
    matrix = sp.csr_matrix(
        (weights[keep], (users[keep], items[keep])), shape=(num_users + 1, num_items + 1), dtype=np.float64
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def round_scores(scores: np.ndarray, bits: int = 30) -> np.ndarray:
    """Round float64 `scores` to `bits` significant binary digits (half up on the mantissa).

    Every step is exact in IEEE arithmetic (frexp, scaling by a power of two, floor of a number below 2**53,
    ldexp), so the same input gives the same output on any machine, and inputs that differ only in their last
    bits (sums in another order) map to the same value unless they straddle a rounding boundary."""
    mantissa, exponent = np.frexp(np.asarray(scores, dtype=np.float64))  # scores = m * 2**e, 0.5 <= |m| < 1
    return np.ldexp(np.floor(mantissa * 2.0**bits + 0.5), exponent - bits)


def _kth_largest(
    scores: np.ndarray, starts: np.ndarray, counts: np.ndarray, k: int, budget: int = 1 << 22
) -> np.ndarray:
    """The k-th largest score of every row with more than k entries (-inf for the others), rows given as
    segments `scores[starts[r] : starts[r] + counts[r]]`. Heavy rows, in order of their length (little padding),
    are padded into dense blocks of at most about `budget` cells and partitioned in place: linear cost."""
    threshold = np.full(len(counts), -np.inf)
    heavy = np.flatnonzero(counts > k)  # [h] rows that need a threshold
    heavy = heavy[np.argsort(counts[heavy], kind="stable")]  # shortest first
    lo = 0
    while lo < len(heavy):
        cells = np.arange(1, len(heavy) - lo + 1) * counts[heavy[lo:]]  # padded size if the block ended there
        block = heavy[lo : lo + max(1, int(np.searchsorted(cells, budget, side="right")))]  # [b] similar rows
        width = int(counts[block[-1]])
        owner = np.repeat(np.arange(len(block)), counts[block])  # [m] block row of each entry
        position = np.arange(len(owner)) - np.repeat(np.cumsum(counts[block]) - counts[block], counts[block])
        padded = np.full((len(block), width), -np.inf)  # [b, width]
        padded[owner, position] = scores[starts[block][owner] + position]
        padded.partition(width - k, axis=1)
        threshold[block] = padded[:, width - k]  # [b] k-th largest
        lo += len(block)
    return threshold


def top_k_rows(
    matrix_rows: sp.spmatrix, k: int, exclude: sp.spmatrix | None = None, *, score_bits: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` columns of each row of `matrix_rows` (a batch of rows of a score matrix, any scipy format;
    each (row, column) stored once, as scipy's products and COO conversions give).

    Scores are rounded (`round_scores`), entries <= 0 and the structural entries of `exclude` (same shape, e.g.
    the diagonal or the items a user already has) dropped, then ranked by score descending, column ascending.
    Returns indices int64 [n, k] (column ids, 0 = padding) and scores float32 [n, k] (0 = padding).

    Cost: linear passes over the entries (rounding, exclusion as `M - M * pattern`, a per-row k-th largest
    threshold by `np.partition`) and one lexsort of the survivors (about k per row, ties included)."""
    matrix = sp.csr_matrix(matrix_rows, dtype=np.float64)
    num_rows = matrix.shape[0]
    if exclude is not None:
        if exclude.shape != matrix.shape:
            raise ValueError(f"exclude: expected shape {matrix.shape}, got {exclude.shape}")
        pattern = sp.csr_matrix(exclude, dtype=np.float64, copy=True)
        pattern.data[:] = 1.0
        matrix = matrix - matrix.multiply(pattern)  # x - x * 1 is exactly 0 and is not stored
    rows = np.repeat(np.arange(num_rows, dtype=np.int64), np.diff(matrix.indptr))  # [nnz], ascending
    scores = round_scores(matrix.data, score_bits)  # [nnz]
    keep = scores > 0
    rows, cols, scores = rows[keep], matrix.indices[keep].astype(np.int64), scores[keep]
    counts = np.bincount(rows, minlength=num_rows)  # [n]
    if len(counts) and counts.max() > k:
        threshold = _kth_largest(scores, np.cumsum(counts) - counts, counts, k)  # [n]
        keep = scores >= threshold[rows]  # ties with the k-th score survive, the lexsort decides
        rows, cols, scores = rows[keep], cols[keep], scores[keep]
    order = np.lexsort((cols, -scores, rows))  # by row, then score desc, then column asc
    rows, cols, scores = rows[order], cols[order], scores[order]
    counts = np.bincount(rows, minlength=num_rows)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its row
    top = rank < k
    indices = np.zeros((num_rows, k), dtype=np.int64)
    values = np.zeros((num_rows, k), dtype=np.float32)
    indices[rows[top], rank[top]] = cols[top]
    values[rows[top], rank[top]] = scores[top]
    return indices, values


def _diagonal(num_rows: int, offset: int, num_cols: int) -> sp.csr_matrix:
    """The pattern of the entries (r, offset + r) of a [num_rows, num_cols] batch: a row's own column."""
    rows = np.arange(num_rows)
    return sp.csr_matrix((np.ones(num_rows), (rows, rows + offset)), shape=(num_rows, num_cols))


def co_occurrence_neighbours(
    matrix: sp.spmatrix, k: int, *, row_batch: int = 2048, score_bits: int = 30
) -> np.ndarray:
    """Top-`k` rows sharing columns with each row (M M^T without the diagonal, weights included), computed one
    row batch at a time: int64 [N, k], 0 = padding. u2a2u of `matrix`, or a2u2a of its transpose."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    transposed = matrix.T.tocsr()
    out = np.zeros((matrix.shape[0], k), dtype=np.int64)
    for start in range(0, matrix.shape[0], row_batch):
        rows = matrix[start : start + row_batch]
        own = _diagonal(rows.shape[0], start, matrix.shape[0])
        out[start : start + rows.shape[0]] = top_k_rows(
            rows @ transposed, k, exclude=own, score_bits=score_bits
        )[0]
    return out


def _check_graph(matrix: sp.spmatrix, similarity: sp.spmatrix | None) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    if matrix[0].nnz or matrix[:, 0].nnz:
        raise ValueError("matrix: row and column 0 are the reserved unknown index and must be empty")
    if similarity is not None and similarity.shape != (matrix.shape[1], matrix.shape[1]):
        raise ValueError(f"similarity: expected shape {(matrix.shape[1],) * 2}, got {similarity.shape}")
    return matrix


def metapath_neighbours(
    matrix: sp.spmatrix,
    similarity: sp.spmatrix | None = None,
    config: ExpansionConfig | None = None,
    *,
    progress: bool = False,
) -> Neighbours:
    """The five metapath expansions of the user x item `matrix` R [U+1, A+1] and the item x item `similarity`
    S [A+1, A+1] (Swing of R when None), each as (indices int64 [N+1, K], scores float32 [N+1, K]) with N = U
    for the user-side metapaths (`USER_METAPATHS`) and N = A for the item side (`AUTHOR_METAPATHS`)."""
    # imported here: the contract module imports torch, which Spark's executors (top_k_rows only) do not need
    from recsys.data.batches import AUTHOR_METAPATHS, USER_METAPATHS

    config = config or ExpansionConfig()
    matrix = _check_graph(matrix, similarity)
    similarity = (
        swing(matrix, config.swing) if similarity is None else sp.csr_matrix(similarity, dtype=np.float64)
    )
    num_users, num_items = matrix.shape
    transposed = matrix.T.tocsr()  # [A+1, U+1]
    k, bits, batch = config.k, config.score_bits, config.row_batch
    out = {
        name: (np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32))
        for names, n in ((USER_METAPATHS, num_users), (AUTHOR_METAPATHS, num_items))
        for name in names
    }

    def put(name: str, start: int, result: tuple[np.ndarray, np.ndarray]) -> None:
        out[name][0][start : start + len(result[0])] = result[0]
        out[name][1][start : start + len(result[1])] = result[1]

    began = time.perf_counter()
    for start in tqdm(range(0, num_users, batch), desc="user metapaths", disable=not progress):
        rows = matrix[start : start + batch]  # [b, A+1]
        own = _diagonal(rows.shape[0], start, num_users)
        co_users = rows @ transposed  # [b, U+1] R R^T
        put("u2a2u", start, top_k_rows(co_users, k, exclude=own, score_bits=bits))
        others = co_users - co_users.multiply(own)  # [b, U+1] R R^T without the user itself
        put("u2a2u2a", start, top_k_rows(others @ matrix, k, exclude=rows, score_bits=bits))  # [b, A+1]
        put("u2a2a", start, top_k_rows(rows @ similarity, k, score_bits=bits))  # [b, A+1] R S
    for start in tqdm(range(0, num_items, batch), desc="item metapaths", disable=not progress):
        rows = transposed[start : start + batch]  # [b, U+1]
        own = _diagonal(rows.shape[0], start, num_items)
        put("a2a", start, top_k_rows(similarity[start : start + batch], k, exclude=own, score_bits=bits))
        put("a2u2a", start, top_k_rows(rows @ matrix, k, exclude=own, score_bits=bits))  # [b, A+1] R^T R
    logger.info(
        "metapaths: %d users, %d items, %d edges, K=%d in %.2fs",
        num_users - 1,
        num_items - 1,
        matrix.nnz,
        k,
        time.perf_counter() - began,
    )
    return out
