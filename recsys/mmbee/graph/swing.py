"""Swing item-item similarity (Yang et al., 2020), vectorised over scipy.sparse; MMBee's author->author graph.

    s(i, j) = sum over ordered pairs (u, v), u != v, u and v in U_i & U_j of  w_u * w_v / (alpha + |I_u & I_v|)
    w_u     = (beta + |I_u|) ** -gamma

U_i is the set of users with an edge to item i (a streamer a viewer gifted, in MMBee), I_u the items of user u.
Swing only looks at who interacted, not how much: the input matrix is binarised (`R > 0`). The sum runs over
*ordered* pairs as written in MMBee's formula, i.e. twice the sum over unordered pairs; we enumerate unordered
pairs u < v and double their weight.

How it is vectorised: B = (R > 0) (users x items). One block of users at a time, C = B_block B^T gives
|I_u & I_v| for every pair; the pairs u < v with C >= 1 become the rows of a binary matrix X (pairs x items,
row p = B_u * B_v, the items both users share), and with D = diag(2 w_u w_v / (alpha + C_uv))

    S = sum over chunks of X^T D X,  diagonal zeroed.

X^T D X adds each pair's weight to every (i, j) both members share, which is exactly the Swing sum. Memory is
bounded by `SwingConfig.user_block` (rows of C) and `SwingConfig.pair_chunk` (rows of X); the cost is the
number of (pair, shared item, shared item) triples, inherent to Swing. Index 0 (reserved "unknown") stays empty
when R's row and column 0 are empty.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsys.mmbee.graph.config import SwingConfig

logger = logging.getLogger(__name__)


def binarize(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Structural pattern of the positive entries of `matrix` as a float64 CSR of ones (sorted indices)."""
    b = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    b.data = (b.data > 0).astype(np.float64)
    b.eliminate_zeros()
    b.sort_indices()
    return b


def user_weights(binary: sp.csr_matrix, beta: float, gamma: float) -> np.ndarray:
    """w_u = (beta + |I_u|) ** -gamma for every row of the binary user x item matrix: float64 [U]."""
    degree = np.diff(binary.indptr).astype(np.float64)  # [U] |I_u|
    return (beta + degree) ** -gamma


def user_pairs(binary: sp.csr_matrix, config: SwingConfig):
    """Yield (u, v, shared) int64 arrays of the pairs u < v sharing at least one item, one user block at a time."""
    num_users = binary.shape[0]
    transposed = binary.T.tocsr()
    for start in range(0, num_users, config.user_block):
        stop = min(start + config.user_block, num_users)
        counts = (binary[start:stop] @ transposed).tocoo()  # [block, U] |I_u & I_v|
        u = counts.row.astype(np.int64) + start
        v = counts.col.astype(np.int64)
        upper = v > u
        if upper.any():
            yield u[upper], v[upper], np.rint(counts.data[upper]).astype(np.int64)


def drop_diagonal(matrix: sp.spmatrix) -> sp.csr_matrix:
    """`matrix` without its diagonal and without stored zeros, as a CSR with sorted indices."""
    coo = sp.coo_matrix(matrix)
    keep = (coo.row != coo.col) & (coo.data != 0)
    out = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)
    out.sort_indices()
    return out


def swing(matrix: sp.spmatrix, config: SwingConfig | None = None) -> sp.csr_matrix:
    """Swing similarity of the columns (items) of the user x item `matrix`: float64 CSR [I, I], zero diagonal,
    symmetric, only positive entries stored. Entry values of `matrix` only matter through `> 0`."""
    config = config or SwingConfig()
    binary = binarize(matrix)
    num_items = binary.shape[1]
    weights = user_weights(binary, config.beta, config.gamma)  # [U]
    similarity = sp.csr_matrix((num_items, num_items), dtype=np.float64)
    num_pairs = 0
    for u, v, shared in user_pairs(binary, config):
        for lo in range(0, len(u), config.pair_chunk):
            pu, pv = u[lo : lo + config.pair_chunk], v[lo : lo + config.pair_chunk]
            pair_weight = (
                2.0 * weights[pu] * weights[pv] / (config.alpha + shared[lo : lo + config.pair_chunk])
            )
            intersections = binary[pu].multiply(binary[pv]).tocsr()  # [P, I] items both users share
            weighted = sp.diags(pair_weight) @ intersections  # [P, I] D X
            similarity = similarity + (intersections.T @ weighted).tocsr()  # [I, I] X^T D X
            num_pairs += len(pu)
    similarity = drop_diagonal(similarity)
    logger.info("swing: %d items, %d user pairs, %d similar item pairs", num_items, num_pairs, similarity.nnz)
    return similarity
