"""One request's scores with the viewer's work done once: `ExportableRequestMMBee(model, takes_h_m)`.

A ranking request is one viewer and B candidate streams, and the batch the serving featurizer builds repeats
the viewer's features on every row. `MMBeeModel.forward` treats rows as independent, so at serving time it
embeds the viewer's behaviour sequence, projects its Θ row and gathers its metapath neighbours B times over.
This module computes the same scores (float rounding apart; the export checks them at 1e-5) from the viewer's
inputs given once ([1, ...], `REQUEST_VIEWER_INPUT_NAMES`) and the candidates' ([B, ...],
`request_candidate_input_names`):

- the behaviour keys and values [H, e] are built once; SIM scores the candidate queries against them with
  one [B, e] x [e, H] product and gathers its top-k rows from them;
- SIM's DIN layer W [q, k, q − k, q ⊙ k] + b is split by linearity into (W_q + W_d) q + (W_k − W_d) k +
  W_p (q ⊙ k) + b: the key term is computed for the H behaviours, not for B·k gathered copies, and the
  [B, k, 4e] concatenation disappears;
- GIE reads projected node rows (W θ + b for every user and streamer, a table computed from the weights when
  the module is built, so no per-candidate Wᵀ q), looks up the viewer's Θ row and the nodes of the viewer's
  metapaths (u2a2u, u2a2u2a, u2a2a) once ([P_v, K, d]) and attends to them with every candidate's query; the
  streamer's part of that query, W_a Θ_a + b, is a per-streamer table too;
- with h_m on, what depends on the candidate's streamer and segment only — h_m and GIE's attention over the
  streamer's own metapaths (a2a, a2u2a: pooled vectors and best logits) — is a *candidate row*
  (`ExportableCandidateRows`, [B, d + P_c (d + 1)]), which a server computes once per (streamer, segment) with
  h_m and caches (the paper's precomputed expansions); the request program reads those rows;
- the viewer's id embedding and dense statistics are broadcast, not copied.

Both backbones (SIM, MMoE) and every ablation are covered; the backbone-alone model gets the same savings, so
a comparison of MMBee against its backbone stays like for like. The weights are the model's own (the tables
above are derived from them), so the programs exported from it match `ExportableMMBee`'s (tested at 1e-6).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.batches import METAPATH_SOURCE, METAPATH_TARGET, METAPATHS, GTRBatch
from recsys.mmbee.models.mmbee import MMBeeModel
from recsys.mmbee.modules import masked_mean

VIEWER_FIELDS = ("users", "user_dense", "history_authors", "history_content", "history_actions")
"""The `GTRBatch` fields that describe the viewer (with the lists of the viewer's metapaths)."""
REQUEST_VIEWER_INPUT_NAMES = VIEWER_FIELDS + tuple(
    f"neighbours_{name}" for name in METAPATHS if METAPATH_SOURCE[name] == "user"
)
"""The viewer's inputs of a request program, each with a batch dimension of exactly 1."""
CANDIDATE_METAPATH_INPUT_NAMES = tuple(
    f"neighbours_{name}" for name in METAPATHS if METAPATH_SOURCE[name] == "author"
)
"""The candidate streamer's own metapath lists (a2a, a2u2a)."""
CANDIDATE_ROW_INPUT_NAMES = ("authors", "h_m") + CANDIDATE_METAPATH_INPUT_NAMES
"""`ExportableCandidateRows`'s inputs: what a candidate row depends on (the streamer, its segment's h_m)."""


def request_candidate_input_names(takes_h_m: bool) -> tuple[str, ...]:
    """The candidates' inputs of a request program (batch dimension B): with h_m on, the candidate rows
    (`ExportableCandidateRows`) stand for h_m and the candidate's metapath lists."""
    if takes_h_m:
        return ("authors", "author_dense", "candidate_rows")
    return ("authors", "author_dense") + CANDIDATE_METAPATH_INPUT_NAMES


def request_input_names(takes_h_m: bool) -> tuple[str, ...]:
    """Every input of a request program, in order: the viewer's, then the candidates'."""
    return REQUEST_VIEWER_INPUT_NAMES + request_candidate_input_names(takes_h_m)


class ExportableRequestMMBee(nn.Module):
    """`forward(*inputs)` -> GTR probability [B] of one viewer's B candidates; `inputs` are
    `request_input_names(takes_h_m)`: the viewer's tensors with one row, the candidates' with B. Scores equal
    `ExportableMMBee`'s on the batch that repeats the viewer's row B times (float rounding apart).

    It holds the model's sub-modules that scoring reads (not MFQ: h_m is an input) and tables derived from the
    weights when it is built (a snapshot: build it after training, right before export)."""

    def __init__(self, model: MMBeeModel, takes_h_m: bool = False) -> None:
        super().__init__()
        if takes_h_m and model.fusion_arch is None:
            raise ValueError("takes_h_m needs a model with h_m on (use_mfq and use_h_m)")
        if model.fusion_arch is not None and not takes_h_m:
            raise ValueError("a model with h_m on is scored from candidate rows: takes_h_m must be set")
        self.takes_h_m = takes_h_m
        self.has_h_m = model.fusion_arch is not None
        self.h_m_dim = model.config.hidden_dim
        self.sparse_arch = model.sparse_arch
        self.behaviour_arch = model.behaviour_arch
        self.backbone = model.backbone
        self.over_arch = model.over_arch
        gie = model.expansion_arch
        self.has_gie = gie is not None
        self.has_h_g = gie is not None and gie.output is not None
        self.num_user_nodes = 0 if gie is None else gie.theta_users.shape[0]
        with torch.no_grad():
            # GIE's node rows projected once (W θ + b), users' then streamers': rows to look up per request
            self.register_buffer("nodes", None if gie is None else _projected_nodes(gie))
            if self.has_h_g:
                self._init_gie(gie, context=model._gie_sees_h_m)
            if self.over_arch is not None:  # SIM: its DIN layer's weight split by input block, once
                w_q, w_k, w_d, w_p = self.backbone.attention[0].weight.chunk(4, dim=1)  # 4 x [hidden, e]
                for name, weight in (("din_query", w_q + w_d), ("din_key", w_k - w_d), ("din_product", w_p)):
                    self.register_buffer(name, weight.T.contiguous())  # [e, hidden]

    def _init_gie(self, gie, context: bool) -> None:
        self.gie_output = gie.output
        self.gie_empty = gie.empty
        self.gie_context = context
        order = (
            gie.user_metapaths + gie.author_metapaths
        )  # the order of the query blocks, `empty`, h_g's input
        self.gie_order, self.gie_dim = order, gie.dim
        # the attention query W [Θ_author, h_m] + b, scaled by 1/√d: the streamer's part is a table per streamer
        weight, bias = gie.query_projection.weight, gie.query_projection.bias  # [P d, d (+ d)]
        scale = 1 / math.sqrt(gie.dim)
        authors = self.nodes[self.num_user_nodes :]  # [A + 1, d]
        self.register_buffer("query_table", ((authors @ weight[:, : gie.dim].T + bias) * scale).contiguous())
        self.register_buffer(
            "query_context", (weight[:, gie.dim :].T * scale).contiguous() if context else None
        )
        # per source (the viewer's lists, the candidate's): its paths, their query blocks, their node offsets
        self.gie_groups = []
        for source in ("user", "author"):
            paths = tuple(p for p in order if METAPATH_SOURCE[p] == source)
            if paths:
                offsets = [0 if METAPATH_TARGET[p] == "user" else self.num_user_nodes for p in paths]
                self.register_buffer(f"offsets_{source}", torch.tensor(offsets)[:, None])  # [P_s, 1]
                self.gie_groups.append((source, paths, _span([order.index(p) for p in paths])))
        done = [p for _, paths, _ in self.gie_groups for p in paths]
        self.gie_back = _span([done.index(p) for p in order])  # the computed blocks back in the query order

    @property
    def input_names(self) -> tuple[str, ...]:
        return request_input_names(self.takes_h_m)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        names = self.input_names
        if len(inputs) != len(names):
            raise ValueError(f"expected {len(names)} tensors ({names}), got {len(inputs)}")
        x = dict(zip(names, inputs, strict=True))
        authors = x["authors"]  # [B]
        rows = authors.shape[0]
        user = self.sparse_arch.users(x["users"])  # [1, e]
        candidate_rows = x.get("candidate_rows")  # [B, d + P_c (d + 1)]: h_m, the candidate's own expansions
        h_m = None if candidate_rows is None else candidate_rows[:, : self.h_m_dim]
        parts = [self.sparse_arch.authors(authors)]  # [B, e]
        if self.has_h_m:
            parts.append(h_m)  # [B, d]
        if self.has_gie:
            theta_user = F.embedding(x["users"], self.nodes)  # [1, d]
            theta_author = F.embedding(authors + self.num_user_nodes, self.nodes)  # [B, d]
            if self.has_h_g:
                parts.append(self._h_g(x, authors, h_m, candidate_rows))  # [B, d]
            parts += [theta_user.expand(rows, -1), theta_author]
        candidate = torch.cat(parts, dim=-1)  # [B, c]
        dense = torch.cat([x["user_dense"].expand(rows, -1), x["author_dense"]], dim=-1)  # [B, FU + FA]
        history_authors = x["history_authors"][0]  # [H]
        keys, values = self.behaviour_arch(
            self.sparse_arch.authors(history_authors), x["history_content"][0], x["history_actions"][0]
        )  # [H, e] each
        mask = history_authors > 0  # [H]
        if self.over_arch is not None:
            interest = self._sim(candidate, keys, values, mask)  # [B, e]
            features = torch.cat([user.expand(rows, -1), candidate, dense, interest], dim=-1)
            logits = self.over_arch(features)
        else:
            pooled = masked_mean(values.unsqueeze(0), mask.unsqueeze(0))  # [1, e]
            features = torch.cat([user.expand(rows, -1), candidate, dense, pooled.expand(rows, -1)], dim=-1)
            logits = self.backbone(features)
        return torch.sigmoid(logits[:, 0])

    def _sim(self, candidate: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
        """`SIM.forward` for candidates [B, c] against one viewer's keys/values [H, e], mask [H] -> [B, e]."""
        sim = self.backbone
        q = sim.query(candidate)  # [B, e]
        scores = (q @ keys.T) / math.sqrt(sim.dim)  # [B, H]
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        kept_scores, index = scores.topk(min(sim.top_k, keys.shape[0]), dim=1)  # [B, k]
        kept_mask = mask[index]  # [B, k]
        # W [q, k, q - k, q * k] + b = (W_q + W_d) q + (W_k - W_d) k + W_p (q * k) + b
        query_part = q @ self.din_query + sim.attention[0].bias  # [B, hidden]
        key_part = keys @ self.din_key  # [H, hidden]: per behaviour, not per kept copy
        product = (q.unsqueeze(1) * keys[index]) @ self.din_product  # [B, k, hidden]
        hidden = query_part.unsqueeze(1) + key_part[index] + product
        logits = sim.attention[2](sim.attention[1](hidden)).squeeze(-1)  # [B, k]
        logits = logits + torch.where(kept_mask, kept_scores, 0.0)
        logits = torch.where(kept_mask, logits, torch.finfo(logits.dtype).min)  # padding: weight exactly 0
        weights = (logits - logits.amax(dim=-1, keepdim=True)).exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)  # [B, k]
        pooled = (weights.unsqueeze(-1) * values[index]).sum(1)  # [B, e]
        return torch.where(kept_mask.any(dim=-1, keepdim=True), pooled, sim.empty)

    def _query(self, authors: torch.Tensor, h_m: torch.Tensor | None) -> torch.Tensor:
        """GIE's attention queries [B, P, d], already scaled by 1/√d."""
        q = self.query_table[authors]  # [B, P d]
        if self.gie_context:
            q = q + h_m @ self.query_context
        return q.unflatten(-1, (len(self.gie_order), self.gie_dim))

    def _attend(self, source: str, paths, span, q: torch.Tensor, lists: list[torch.Tensor]):
        """(pooled [B, P_s, d], best logit [B, P_s]) of the metapaths `paths` whose lists are the viewer's
        ([1, K] each, looked up once) or the candidates' ([B, K])."""
        width = max(n.shape[1] for n in lists)  # unequal K: padded to the longest
        lists = [n if n.shape[1] == width else F.pad(n, (0, width - n.shape[1])) for n in lists]
        index = torch.stack(lists, 1)  # [1 or B, P_s, K]
        mask = index > 0  # padding (index 0 of either space) is masked
        q_span = q[:, span]  # [B, P_s, d]
        if source == "user":
            path_nodes = F.embedding(index[0] + self.offsets_user, self.nodes)  # [P_s, K, d]
            logits = torch.einsum("bpd,pkd->bpk", q_span, path_nodes)  # [B, P_s, K]
        else:
            path_nodes = F.embedding(index + self.offsets_author, self.nodes)  # [B, P_s, K, d]
            logits = (path_nodes * q_span.unsqueeze(2)).sum(-1)
        masked = torch.where(mask, logits, torch.finfo(logits.dtype).min)  # padding: weight exactly 0
        best = masked.amax(dim=-1, keepdim=True)  # [B, P_s, 1]
        weights = (masked - best).exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)  # [B, P_s, K]
        if source == "user":
            pooled_nodes = torch.einsum("bpk,pkd->bpd", weights, path_nodes)  # [B, P_s, d]
        else:  # a product and a sum: 3-4x faster than einsum's batched [1, K] x [K, d] products on CPU
            pooled_nodes = (weights.unsqueeze(-1) * path_nodes).sum(2)
        found = mask.any(-1, keepdim=True)  # [1 or B, P_s, 1]
        pooled = torch.where(found, pooled_nodes, self.gie_empty[span])
        # the best neighbour's attention logit (0 for an empty list): "is the candidate among my expansions"
        return pooled, torch.where(found, best, 0.0).squeeze(-1)

    def candidate_rows(self, authors: torch.Tensor, h_m: torch.Tensor, lists: dict) -> torch.Tensor:
        """[B, d + P_c (d + 1)]: h_m, then GIE's attention over the candidate streamer's own metapaths (pooled
        vectors, best logits), everything of a candidate that depends on the streamer and its segment only,
        so a server computes it once per (streamer, segment) with h_m and caches it."""
        parts = [h_m]
        for source, paths, span in self.gie_groups if self.has_h_g else ():
            if source == "author":
                pooled, best = self._attend(
                    source, paths, span, self._query(authors, h_m), [lists[p] for p in paths]
                )
                parts += [pooled.flatten(1), best]
        return torch.cat(parts, dim=-1)

    def _h_g(
        self, x: dict, authors: torch.Tensor, h_m: torch.Tensor | None, candidate_rows: torch.Tensor | None
    ) -> torch.Tensor:
        """`GIE.forward(...).h_g` [B, d]: the viewer's metapath lists ([1, K]) looked up once, the candidates'
        read from their candidate rows (or looked up per row without h_m)."""
        q = self._query(authors, h_m)  # [B, P, d]
        pooled, closest = [], []
        for source, paths, span in self.gie_groups:
            if source == "author" and candidate_rows is not None:
                count, start = len(paths), self.h_m_dim
                pooled.append(
                    candidate_rows[:, start : start + count * self.gie_dim].unflatten(-1, (count, -1))
                )
                closest.append(candidate_rows[:, start + count * self.gie_dim :])
            else:
                block = self._attend(source, paths, span, q, [x[f"neighbours_{p}"] for p in paths])
                pooled.append(block[0])
                closest.append(block[1])
        pooled_all = torch.cat(pooled, dim=1)[:, self.gie_back]  # [B, P, d]
        features = torch.cat([pooled_all.flatten(1), torch.cat(closest, dim=1)[:, self.gie_back]], dim=-1)
        return self.gie_output(features)  # [B, d]


class ExportableCandidateRows(nn.Module):
    """`forward(authors [B], h_m [B, d], *the candidate's metapath lists [B, K])` -> candidate rows (see
    `ExportableRequestMMBee.candidate_rows`), the inputs `CANDIDATE_ROW_INPUT_NAMES`."""

    def __init__(self, request: ExportableRequestMMBee) -> None:
        super().__init__()
        if not request.takes_h_m:
            raise ValueError("candidate rows belong to a model with h_m on")
        self.request = request

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(CANDIDATE_ROW_INPUT_NAMES):
            raise ValueError(
                f"expected {len(CANDIDATE_ROW_INPUT_NAMES)} tensors ({CANDIDATE_ROW_INPUT_NAMES})"
            )
        authors, h_m, *lists = inputs
        names = [name.removeprefix("neighbours_") for name in CANDIDATE_METAPATH_INPUT_NAMES]
        return self.request.candidate_rows(authors, h_m, dict(zip(names, lists, strict=True)))


def _span(index: list[int]) -> slice | list[int]:
    """`index` as a slice when it is a run of consecutive positions (a view, not a gathered copy)."""
    if index == list(range(index[0], index[0] + len(index))):
        return slice(index[0], index[0] + len(index))
    return index


def _projected_nodes(gie) -> torch.Tensor:
    """Every node's projected Θ row, W θ + b: the users' [U + 1, d] then the streamers' [A + 1, d]. GIE pools
    raw Θ rows and projects the result (cheaper for one batch of independent rows); a request program carries
    the projected tables instead (they depend on the weights alone), so its viewer's nodes and the candidates'
    are rows to look up, and the attention logits ⟨W θ + b, q⟩ need no per-candidate Wᵀ q."""
    with torch.no_grad():
        users = gie.user_projection(gie.theta_users)
        authors = gie.author_projection(gie.theta_authors)
    return torch.cat([users, authors]).detach().clone()


def with_viewer_of(batch: GTRBatch, row: int) -> GTRBatch:
    """`batch` with row `row`'s viewer inputs on every row (broadcast views): that viewer's request for every
    row's candidate, what a request program scores."""
    viewer = {
        name: getattr(batch, name)[row : row + 1].expand_as(getattr(batch, name)) for name in VIEWER_FIELDS
    }
    neighbours = {
        name: lists[row : row + 1].expand_as(lists) if METAPATH_SOURCE[name] == "user" else lists
        for name, lists in batch.neighbours.items()
    }
    return dataclasses.replace(batch, **viewer, neighbours=neighbours)
