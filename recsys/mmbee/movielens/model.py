"""The GIE-based recommender for user x item data: MMBee's graph-guided interest expansion, ranking all items.

Our reading of MMBee's GIE (Sec. 3.3) on MovieLens, where "author" becomes "item":

- **Θ** (node embeddings) pre-trained with GraphCL on the training graph (`recsys.mmbee.graph.graphcl`), then
  fine-tuned: they initialise the ego embeddings of a LightGCN backbone (PyG's `LightGCN`, the same module and
  size as the baseline, so the comparison isolates what the expansions add). h = the propagated embeddings.
- **Lists** (`expansions.py`, training part only, K each): of the user u2i (recent items), u2i2u (similar
  users), u2i2u2i (their items minus the user's own), u2i2i (Swing-similar items); of the candidate item
  i2i (Swing) and i2u2i (items sharing its users).
- **User side: target attention against the candidate** i, per list m over its neighbours n:
  a_n = <W_q^m h_i, h_n> / sqrt(d) + c_m log(w_n / max w), p_m(u | i) = sum_n softmax(a)_n W_v^m h_n, and the
  score gets <p_m, h_i>. w_n is the list's own weight of n (path count, Swing sum, recency), c_m is learned.
  A list with no valid neighbour adds <e_m, h_i> with a learned e_m.
- **Item side**, attention with the item itself as the query, expands the item vector:
  h'_i = h_i + sum_m W_o^m p_m(i) (independent of the user: computed for all items once per step).
- score(u, i) = <h_u, h'_i> + sum_m <p_m(u | i), h_i>, trained with BPR plus L2 on the batch's ego embeddings
  (PyG's `recommendation_loss`, as the baseline) in `train.py`'s loop.

Choices of ours, and why:
- **Graph values.** Each neighbour's value also carries lambda_m * s(n, i), the graph's own weight between
  neighbour and candidate: for a similar user v, R[v, i]; for an item n, the cosine of the co-occurrence of
  n and i *leaving the user out* (a training positive would otherwise count its own user). c_m and lambda_m
  start at `init_graph_scale`, so training starts from the graph's ranking (attention by the lists' weights)
  added to GraphCL's, and BPR re-weighs both.
- **Holdout training** (`holdout`): BPR of the whole model predicts each user's most recent 20% of training
  pairs from a graph (lists, co-occurrences, propagation) of the older 80% - the situation of ranking, where
  the held-out items come after everything in the graph. Trained on the same graph it is read from, the model
  would learn that a positive already sits in its own lists and co-occurrences, which a held-out item never
  does. With `backbone_loss`, the backbone alone also learns LightGCN's objective on every training pair.
  Ranking then reads the graph of all the training pairs (`use_graph` swaps it for train + valid at test).
- The candidate is masked out of the user's item lists (`mask_candidate`): a training positive is in its own
  user's u2i list; an exact match never happens for held-out items. Same rule in training and ranking.
- W_v^m, W_o^m and e_m start at zero, W_q^m at the identity (attention by similarity).
- Two code paths with one result (tested): `score_pairs` for training (each row its own candidates: batched
  matmuls over [B * M, 2C, d] x [B * M, d, K]) and `scorer` for full ranking (all items are everybody's
  candidates: the projections of all items are computed once and each user chunk is one einsum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import LightGCN

from recsys.mmbee.graph.config import GraphCLConfig
from recsys.mmbee.movielens.baselines import bipartite_adjacency
from recsys.mmbee.movielens.expansions import (
    ITEM_METAPATHS,
    USER_METAPATHS,
    USER_TARGET,
    Expansions,
    build_expansions,
    recency_rank,
)
from recsys.mmbee.movielens.protocol import Scorer, Split


@dataclass(frozen=True)
class GIEConfig:
    embedding_dim: int = 64
    num_layers: int = 3
    lambda_reg: float = 1e-4
    neighbours: int = 10
    """K per list."""
    recency_tau: float | None = 10.0
    """Recency scale of the user-side lists (expansions.py); None: unweighted."""
    user_metapaths: tuple[str, ...] = USER_METAPATHS
    item_metapaths: tuple[str, ...] = ITEM_METAPATHS
    mask_candidate: bool = True
    holdout: float | None = 0.2
    """Fraction of each user's most recent training pairs that BPR predicts from a graph of the older ones
    (`holdout_split`); None: BPR on every training pair, graph = all of them."""
    init_graph_scale: float = 5.0
    """Start value of c_m and lambda_m: training starts from the graph's own ranking (attention by the lists'
    weights, values = graph weights) added to the backbone's."""
    backbone_loss: bool = True
    """Also train the backbone alone on every training pair (LightGCN's own objective)."""
    graph_values: bool = True
    """Add lambda_m * s(n, i) to each neighbour's value: the graph's own weight between neighbour and candidate."""
    leave_user_out: bool = True
    """s(n, i) for item neighbours is computed without the user's own interactions (see the docstring)."""
    graphcl: GraphCLConfig | None = field(
        default_factory=lambda: GraphCLConfig(dim=64, layers=3, epochs=5, batch_size=4096, lr=0.01)
    )
    """How Θ is pre-trained; None: the backbone starts at random (the "w/o Θ" ablation)."""
    score_chunk: int = 64
    """Users per chunk when ranking all items (memory: chunk x items x K x lists floats)."""


def _stack(
    expansions: Expansions, names: tuple[str, ...], rows: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists as ids [rows, M, K] and attention priors log(w / row max w) [rows, M, K] (0 on padding)."""
    if not names:
        return torch.zeros(rows, 0, k, dtype=torch.long), torch.zeros(rows, 0, k)
    index = np.stack([expansions.indices[name] for name in names], axis=1)  # [rows, M, K]
    weight = np.stack([expansions.scores[name] for name in names], axis=1).astype(np.float64)  # [rows, M, K]
    top = np.maximum(weight.max(axis=2, keepdims=True), 1e-30)
    prior = np.where(index > 0, np.log(np.maximum(weight, 1e-30) / top), 0.0)
    return torch.from_numpy(index), torch.from_numpy(prior.astype(np.float32))


def _masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where `valid` holds (weight exactly 0 elsewhere; all-invalid rows are 0)."""
    weights = torch.softmax(logits.masked_fill(~valid, torch.finfo(logits.dtype).min), dim=-1)
    return weights * valid


@dataclass
class GraphInputs:
    """Everything the model reads from a graph of training interactions (tensors, none learned)."""

    adjacency: torch.Tensor  # sparse [U + I, U + I] D^-1/2 A D^-1/2
    user_lists: torch.Tensor  # long [U + 1, M, K]
    user_prior: torch.Tensor  # float [U + 1, M, K] log(w / max w)
    item_lists: torch.Tensor  # long [I + 1, Mi, K]
    item_prior: torch.Tensor  # float [I + 1, Mi, K]
    interactions: torch.Tensor  # float [U + 1, I + 1] binary R
    cooccurrence: torch.Tensor  # float [I + 1, I + 1] R^T R, zero diagonal
    degree: torch.Tensor  # float [I + 1] users per item
    expansions: Expansions

    @classmethod
    def build(cls, split: Split, config: GIEConfig) -> GraphInputs:
        """From split.train only (the lists through `build_expansions`)."""
        expansions = build_expansions(split, config.neighbours, config.recency_tau)
        user_lists, user_prior = _stack(
            expansions, config.user_metapaths, split.num_users + 1, config.neighbours
        )
        item_lists, item_prior = _stack(
            expansions, config.item_metapaths, split.num_items + 1, config.neighbours
        )
        train = split.matrix("train")
        co = (train.T @ train).toarray()  # [I + 1, I + 1]
        np.fill_diagonal(co, 0.0)
        return cls(
            adjacency=bipartite_adjacency(train),
            user_lists=user_lists,
            user_prior=user_prior,
            item_lists=item_lists,
            item_prior=item_prior,
            interactions=torch.from_numpy(train.toarray()),
            cooccurrence=torch.from_numpy(co.astype(np.float32)),
            degree=torch.from_numpy(np.asarray(train.sum(axis=0), dtype=np.float32).ravel()),
            expansions=expansions,
        )


@dataclass
class GIEGraphs:
    """The ranking graph (all of split.train), the fit graph and the BPR targets predicted from it."""

    rank: GraphInputs
    fit: GraphInputs
    targets: np.ndarray  # int64 [N, 2]

    @classmethod
    def build(cls, split: Split, config: GIEConfig) -> GIEGraphs:
        rank = GraphInputs.build(split, config)
        if not config.holdout:
            return cls(rank, rank, split.train)
        past, targets = holdout_split(split, config.holdout)
        return cls(rank, GraphInputs.build(past, config), targets)


def holdout_split(split: Split, fraction: float) -> tuple[Split, np.ndarray]:
    """Each user's most recent `fraction` of training pairs (at least one, at most all but one) as BPR targets
    [N, 2], and the split whose train part is the rest (the graph the targets are predicted from)."""
    rank = recency_rank(split)  # 0 = most recent
    counts = np.bincount(split.train[:, 0], minlength=split.num_users + 1)[split.train[:, 0]]
    n_targets = np.clip(np.floor(fraction * counts), 1, np.maximum(counts - 1, 1))
    is_target = (rank < n_targets) & (counts > 1)
    past = replace(split, train=split.train[~is_target], train_time=split.train_time[~is_target])
    return past, split.train[is_target]


class GIERecommender(nn.Module):
    def __init__(
        self,
        split: Split,
        config: GIEConfig = GIEConfig(),
        theta: tuple[np.ndarray, np.ndarray] | None = None,
        graphs: GIEGraphs | None = None,
    ):
        """`graphs`: `GIEGraphs.build(split, config)` (built here when None). `theta`: GraphCL tables (users
        [U + 1, d], items [I + 1, d], row 0 unused) the backbone starts from. Train with
        `fit(model, split, ..., positives=model.positives)`."""
        super().__init__()
        self.config = config
        self.num_users, self.num_items = split.num_users, split.num_items
        d = config.embedding_dim
        m, mi = len(config.user_metapaths), len(config.item_metapaths)
        self.backbone = LightGCN(self.num_users + self.num_items, d, config.num_layers, normalize=False)
        if theta is not None:
            ego = np.concatenate([theta[0][1:], theta[1][1:]])  # [U + I, d]
            with torch.no_grad():
                self.backbone.embedding.weight.copy_(torch.from_numpy(ego))
        graphs = graphs if graphs is not None else GIEGraphs.build(split, config)
        self.rank_graph, self.fit_graph, self.targets = graphs.rank, graphs.fit, graphs.targets
        self.positives = split.train if config.backbone_loss else self.targets
        """The pairs BPR iterates over (targets only feed the whole model; see `bpr_loss`)."""
        self.target_keys = torch.from_numpy(
            np.sort(self.targets[:, 0] * (self.num_items + 1) + self.targets[:, 1])
        )
        self.user_keys_are_users = [USER_TARGET[name] == "user" for name in config.user_metapaths]
        self.maskable = torch.tensor([config.mask_candidate and not u for u in self.user_keys_are_users])
        self.query = nn.Parameter(torch.eye(d).repeat(m, 1, 1))  # [M, d, d] W_q
        self.value = nn.Parameter(torch.zeros(m, d, d))  # [M, d, d] W_v
        self.prior_scale = nn.Parameter(torch.full((m,), config.init_graph_scale))  # [M] c_m
        self.graph_scale = nn.Parameter(torch.full((m,), config.init_graph_scale))  # [M] lambda_m
        self.empty = nn.Parameter(torch.zeros(m, d))  # [M, d] e_m
        self.item_out = nn.Parameter(torch.zeros(mi, d, d))  # [Mi, d, d] W_o
        self.item_prior_scale = nn.Parameter(torch.zeros(mi))

    def use_graph(self, split: Split) -> None:
        """Rank on split.train from now on (e.g. `split.history("test")` at test time); parameters unchanged."""
        self.rank_graph = GraphInputs.build(split, self.config)

    # ---- shared pieces ---------------------------------------------------------------------------------
    def tables(self, g: GraphInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated embeddings with a zero row 0: users [U + 1, d], items [I + 1, d]."""
        h = self.backbone.get_embedding(g.adjacency)  # [U + I, d]
        zero = torch.zeros_like(h[:1])
        return torch.cat([zero, h[: self.num_users]]), torch.cat([zero, h[self.num_users :]])

    def expanded_items(self, g: GraphInputs, h_items: torch.Tensor) -> torch.Tensor:
        """h'_i for every item [I + 1, d]."""
        index = g.item_lists  # [I + 1, Mi, K]
        keys = h_items[index]  # [I + 1, Mi, K, d]
        logits = torch.einsum("imkd,id->imk", keys, h_items) / math.sqrt(h_items.shape[-1])  # [I + 1, Mi, K]
        logits = logits + self.item_prior_scale[:, None] * g.item_prior
        pooled = torch.einsum("imk,imkd->imd", _masked_softmax(logits, index > 0), keys)  # [I + 1, Mi, d]
        return h_items + torch.einsum("imd,med->ie", pooled, self.item_out)  # [I + 1, d]

    def user_keys(self, g: GraphInputs, h_users, h_items, users: torch.Tensor) -> torch.Tensor:
        """The neighbours' vectors [B, M, K, d] (user vectors for u2i2u, item vectors otherwise)."""
        index = g.user_lists[users]  # [B, M, K]
        return torch.stack(
            [
                (h_users if is_user else h_items)[index[:, m]]
                for m, is_user in enumerate(self.user_keys_are_users)
            ],
            dim=1,
        )

    def candidate_projections(self, h_candidates: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., M, 2, d]: (W_q^m h_i, W_v^m^T h_i), so that a_n = <., h_n> and <W_v h_n, h_i> too."""
        q = torch.einsum("...d,med->...me", h_candidates, self.query)  # [..., M, d]
        v = torch.einsum("...d,mde->...me", h_candidates, self.value)  # [..., M, d]
        return torch.stack([q, v], dim=-2)

    def _combine(self, g: GraphInputs, logits, values, users, candidates, h_candidates) -> torch.Tensor:
        """Pool and add up the user-side lists of `users` [B]: logits, values [B, M, C, K] (before scaling);
        candidates [B|1, C]; h_candidates [B|1, C, d] -> [B, C]."""
        index = g.user_lists[users]  # [B, M, K]
        prior = self.prior_scale[:, None] * g.user_prior[users]  # [B, M, K]
        logits = logits / math.sqrt(h_candidates.shape[-1]) + prior[:, :, None]  # [B, M, C, K]
        valid = (index > 0)[:, :, None, :]  # [B, M, 1, K]
        if self.maskable.any():
            same = index[:, :, None, :] == candidates[:, None, :, None]  # [B, M, C, K]
            valid = valid & ~(same & self.maskable[None, :, None, None])
        weights = _masked_softmax(logits, valid)  # [B, M, C, K]
        if self.config.graph_values:
            values = values + self.graph_scale[:, None, None] * self.graph_weights(
                g, users, index, candidates
            )
        empty = torch.einsum("bcd,md->bmc", h_candidates, self.empty) * ~valid.any(-1)  # [B, M, C]
        return ((weights * values).sum(-1) + empty).sum(1)  # [B, C]

    def graph_weights(self, g: GraphInputs, users, index, candidates) -> torch.Tensor:
        """s(n, i) [B, M, C, K] for users [B], their lists index [B, M, K], candidates [B|1, C].

        A user neighbour v: R[v, i] (does the similar user have the candidate: user-based CF).
        An item neighbour n: the cosine of the co-occurrence of n and i, leaving the user out (our choice):
        (C[n, i] - R[u, n] R[u, i]) / sqrt((deg n - R[u, n]) (deg i - R[u, i])). Without it a training
        positive i would count its own user among the co-occurrences, which a held-out item never can."""
        rows = []
        cand = candidates[:, None, :]  # [B|1, 1, C]
        for m, is_user in enumerate(self.user_keys_are_users):
            n = index[:, m, None, :]  # [B, 1, K]
            if is_user:
                rows.append(g.interactions[n, cand.transpose(1, 2)])  # [B, C, K]
                continue
            co = g.cooccurrence[n, cand.transpose(1, 2)]  # [B, C, K]
            deg_n, deg_i = g.degree[n], g.degree[cand].transpose(1, 2)  # [B, 1, K], [B|1, C, 1]
            if self.config.leave_user_out:
                r_n = g.interactions[users[:, None, None], n]  # [B, 1, K]
                r_i = g.interactions[users[:, None, None], cand.transpose(1, 2)]  # [B, C, 1]
                co, deg_n, deg_i = co - r_n * r_i, deg_n - r_n, deg_i - r_i
            rows.append(co / torch.sqrt((deg_n * deg_i).clamp(min=1.0)))  # [B, C, K]
        return torch.stack(rows, dim=1)  # [B, M, C, K]

    # ---- training path ---------------------------------------------------------------------------------
    def score_pairs(self, g: GraphInputs, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B], items [B, C] -> scores [B, C] on graph `g`."""
        h_users, h_items = self.tables(g)
        expanded = self.expanded_items(g, h_items)  # [I + 1, d]
        base = (expanded[items] @ h_users[users].unsqueeze(-1)).squeeze(-1)  # [B, C]
        return base + self._user_side(g, h_users, h_items, users, items)

    def _user_side(self, g: GraphInputs, h_users, h_items, users, items) -> torch.Tensor:
        b, c = items.shape
        m, d = self.query.shape[0], self.query.shape[-1]
        if m == 0:
            return torch.zeros(b, c)
        keys = self.user_keys(g, h_users, h_items, users)  # [B, M, K, d]
        h_candidates = h_items[items]  # [B, C, d]
        projections = self.candidate_projections(h_candidates)  # [B, C, M, 2, d]
        left = projections.permute(0, 2, 3, 1, 4).reshape(b * m, 2 * c, d)  # [B * M, 2C, d]
        both = torch.bmm(left, keys.reshape(b * m, -1, d).transpose(1, 2))  # [B * M, 2C, K]
        both = both.reshape(b, m, 2, c, -1)  # [B, M, 2, C, K]
        return self._combine(g, both[:, :, 0], both[:, :, 1], users, items, h_candidates)

    def bpr_loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """BPR of the whole model on the fit graph, for the rows whose positive is a target; with
        `config.backbone_loss`, plus BPR of the backbone alone on the ranking graph for every row."""
        nodes = torch.cat([users - 1, positives + self.num_users - 1, negatives + self.num_users - 1])
        candidates = torch.stack([positives, negatives], dim=1)  # [B, 2]
        is_target = self._is_target(users, positives)  # [B]
        loss = torch.zeros(())
        if is_target.any():
            scores = self.score_pairs(self.fit_graph, users[is_target], candidates[is_target])  # [b, 2]
            loss = loss + self.backbone.recommendation_loss(scores[:, 0], scores[:, 1], lambda_reg=0.0)
        if self.config.backbone_loss:
            h_users, h_items = self.tables(self.rank_graph)
            scores = (h_items[candidates] @ h_users[users].unsqueeze(-1)).squeeze(-1)  # [B, 2]
            loss = loss + self.backbone.recommendation_loss(scores[:, 0], scores[:, 1], lambda_reg=0.0)
        reg = self.backbone.embedding.weight[nodes].pow(2).sum() / len(users)
        return loss + self.config.lambda_reg * reg

    def _is_target(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * (self.num_items + 1) + items
        found = torch.searchsorted(self.target_keys, keys).clamp(max=len(self.target_keys) - 1)
        return self.target_keys[found] == keys

    # ---- full ranking ----------------------------------------------------------------------------------
    def scorer(self) -> Scorer:
        """Ranks all items on the ranking graph (all of split.train)."""
        g = self.rank_graph
        with torch.no_grad():
            h_users, h_items = self.tables(g)
            expanded = self.expanded_items(g, h_items)  # [I + 1, d]
            projections = self.candidate_projections(h_items)  # [I + 1, M, 2, d]
        all_items = torch.arange(self.num_items + 1)[None]  # [1, I + 1]
        m = projections.shape[1]

        def score(users: np.ndarray) -> np.ndarray:
            out = []
            with torch.no_grad():
                for start in range(0, len(users), self.config.score_chunk):
                    chunk = torch.from_numpy(users[start : start + self.config.score_chunk])
                    result = h_users[chunk] @ expanded.T  # [b, I + 1]
                    if m:
                        keys = self.user_keys(g, h_users, h_items, chunk)  # [b, M, K, d]
                        both = torch.einsum("bmkd,imtd->bmtik", keys, projections)  # [b, M, 2, I + 1, K]
                        result = result + self._combine(
                            g, both[:, :, 0], both[:, :, 1], chunk, all_items, h_items[None]
                        )
                    out.append(result.numpy())
            return np.concatenate(out)

        return score
