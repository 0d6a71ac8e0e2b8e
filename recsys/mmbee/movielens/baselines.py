"""The two baselines of the MovieLens-100k table: popularity and PyTorch Geometric's LightGCN.

- `popularity_scorer`: every user gets the items ranked by their number of training interactions.
- `LightGCNRecommender`: `torch_geometric.nn.LightGCN` itself (not a copy), trained with its own
  `recommendation_loss` (BPR on sampled negatives plus L2 on the batch's ego embeddings, PyG's
  `lambda_reg`), propagating over the symmetric-normalised training graph that `bipartite_adjacency` builds
  once (so `LGConv(normalize=False)`: the same D^-1/2 A D^-1/2 that LGConv would recompute each layer).
  Node numbering: user u is node u - 1, item i is node num_users + i - 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.nn import LightGCN

from recsys.mmbee.movielens.protocol import Scorer, Split


def popularity_scorer(split: Split) -> Scorer:
    counts = np.asarray(split.matrix("train").sum(axis=0)).ravel()  # [num_items + 1]

    def score(users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(counts, (len(users), len(counts)))

    return score


def bipartite_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the user-item graph as a torch sparse CSR [U + I, U + I] (padding rows dropped)."""
    r = train[1:, 1:].tocsr()  # [U, I]
    a = sp.bmat([[None, r], [r.T, None]], format="csr").astype(np.float32)
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    a = (sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt)).tocsr()
    a.sort_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)),
            torch.from_numpy(a.indices.astype(np.int64)),
            torch.from_numpy(a.data),
            size=a.shape,
            check_invariants=True,  # checked once here (scipy built it)
        )


@dataclass(frozen=True)
class LightGCNConfig:
    embedding_dim: int = 64
    num_layers: int = 3
    lambda_reg: float = 1e-4


class LightGCNRecommender(torch.nn.Module):
    def __init__(self, split: Split, config: LightGCNConfig = LightGCNConfig()):
        super().__init__()
        self.config = config
        self.num_users, self.num_items = split.num_users, split.num_items
        self.lightgcn = LightGCN(
            self.num_users + self.num_items, config.embedding_dim, config.num_layers, normalize=False
        )
        self.register_buffer("adjacency", bipartite_adjacency(split.matrix("train")), persistent=False)

    def item_nodes(self, items: torch.Tensor) -> torch.Tensor:
        return items + self.num_users - 1

    def bpr_loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        embedding = self.lightgcn.get_embedding(self.adjacency)  # [U + I, d]
        user, positive, negative = users - 1, self.item_nodes(positives), self.item_nodes(negatives)
        positive_rank = (embedding[user] * embedding[positive]).sum(-1)  # [B]
        negative_rank = (embedding[user] * embedding[negative]).sum(-1)  # [B]
        nodes = torch.cat([user, positive, negative])
        return self.lightgcn.recommendation_loss(
            positive_rank, negative_rank, node_id=nodes, lambda_reg=self.config.lambda_reg
        )

    def use_graph(self, split: Split) -> None:
        """Propagate over split.train from now on (e.g. `split.history("test")` at test time)."""
        self.adjacency = bipartite_adjacency(split.matrix("train"))

    def scorer(self) -> Scorer:
        with torch.no_grad():
            embedding = self.lightgcn.get_embedding(self.adjacency)  # [U + I, d]
        users_table = embedding[: self.num_users]
        items_table = torch.cat([torch.zeros_like(embedding[:1]), embedding[self.num_users :]])  # [I + 1, d]

        def score(users: np.ndarray) -> np.ndarray:
            return (users_table[torch.from_numpy(users) - 1] @ items_table.T).numpy()  # [B, I + 1]

        return score
