"""The MMBee ranker (KDD 2024, arXiv 2407.00056): `GTRBatch` -> one logit per task [B, T] (task 0: gift).

Composed of named sub-models, as in torchrec's DLRM:

    sparse_arch     id embeddings of viewers and streamers (row 0 = unknown: the cold-start path)
    fusion_arch     MFQ -> h_m [B, d]                            (None when h_m is off)
    expansion_arch  GIE -> h_g [B, d] and Θ rows of viewer/streamer (None when GIE is off)
    behaviour_arch  behaviour sequence -> keys/values [B, H, e]
    backbone        SIM (search + target attention -> interest) or MMoE (experts, gates, towers -> logits)
    over_arch       SIM only: MLP + linear head -> logits [B, T]; MMoE's per-task towers are its over-arch,
                    so `over_arch` is None there

The candidate representation is the streamer id embedding ⊕ h_m ⊕ h_g ⊕ Θ_user ⊕ Θ_author (each part
only when enabled). SIM searches the history with it, and its over-arch sees [user id emb, candidate, dense
statistics, interest]; MMoE sees [user id emb, candidate, dense statistics, masked mean of the history
values].
`forward` has no loss (the train wrapper adds it) and no data-dependent Python control flow, so
`ExportableMMBee` exports with `torch.export` and a dynamic batch dimension.

Ablations are config only (*our* readings of the paper's ablation rows):

- "w/o h_m": `use_h_m=False` (or `use_mfq=False`, the same switch under the module's name): MFQ is built
  nowhere, h_m reaches neither the backbone nor GIE's attention query, and the output does not depend on
  the segment tokens (visual, speech, comments).
- "w/o q_m": `use_queries=False`: MFQ mean-pools h_f instead of attending with per-streamer queries.
- modality subsets: `modalities` ⊂ ("visual", "speech", "comments"); a left-out one is dropped, not zeroed.
- "w/o h_g": `use_h_g=False`: GIE keeps the Θ rows of the viewer and the candidate streamer but pools no
  neighbour list (the output does not depend on `neighbours`).
- "w/o Θ": `use_theta=False`: GIE's node tables are learnable, randomly initialised embeddings instead of
  the frozen GraphCL tables (the tables passed to the constructor are ignored).
- metapath subsets: `metapaths` ⊂ `METAPATHS`.
- `use_gie=False`: no GIE at all (no Θ rows, no h_g): the base ranker plus whatever MFQ adds.
- `gie_query_uses_h_m`: whether GIE's target-attention query is [Θ_author, h_m] or Θ_author alone (our
  choice, default yes when h_m is on: neighbours are weighed by what the streamer shows now, not only by who
  it is).

Serving: h_m is viewer-independent, so `fusion(batch)` can run once per (streamer, segment) and its rows be
passed to `forward(batch, h_m)` for every viewer; that is what keeps MMBee's online cost near the backbone's
(measured in `benchmarks/mmbee_model_latency.py`). The export wrappers follow that split: `ExportableFusion`
(streamer + segment tokens -> h_m) and `ExportableMMBee(model, takes_h_m=True)` (the batch without its tokens,
plus h_m -> GTR probability); `ExportableMMBee(model)` is the whole model in one program. A ranking request
(one viewer, many candidates) is best scored by `recsys.mmbee.models.request.ExportableRequestMMBee`, the same
scores with the viewer's work done once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from recsys.data.batches import AUTHOR_DENSE, HISTORY_ACTIONS, METAPATHS, TASKS, USER_DENSE, GTRBatch
from recsys.mmbee.modules import GIE, MFQ, MODALITIES, SIM, BehaviourEncoder, MMoE, OverArch, masked_mean


@dataclass
class MMBeeConfig:
    num_users: int
    num_authors: int
    content_dim: int
    backbone: Literal["sim", "mmoe"] = "sim"
    embedding_dim: int = 32
    """Width e of the viewer/streamer id embeddings and of the behaviour vectors."""
    hidden_dim: int = 32
    """Width d of h_m, h_g and the projected Θ rows."""
    num_heads: int = 2
    num_queries: int = 4
    """N learnable queries per streamer in MFQ."""
    theta_dim: int = 32
    """Width d_θ of the GraphCL tables (must match the tables given to the model)."""
    use_mfq: bool = True
    """MFQ built (h_m computed); False = "w/o h_m", like `use_h_m=False`."""
    use_h_m: bool = True
    """The paper's "w/o h_m" row when False: no MFQ anywhere."""
    use_queries: bool = True
    """Per-streamer learnable queries in MFQ; False = "w/o q_m" (mean-pooled h_f)."""
    modalities: tuple[str, ...] = MODALITIES
    """Segment token fields MFQ fuses (a subset of visual, speech, comments); the others are never read."""
    use_gie: bool = True
    """GIE built (Θ rows of viewer and streamer, and h_g unless `use_h_g=False`)."""
    use_h_g: bool = True
    """Pooled metapath expansions; False = "w/o h_g" (Θ rows kept, neighbours never read)."""
    use_theta: bool = True
    """Frozen GraphCL tables in GIE; False = "w/o Θ" (learnable, randomly initialised node embeddings)."""
    metapaths: tuple[str, ...] = METAPATHS
    gie_query_uses_h_m: bool = True
    """GIE's attention query is [Θ_author, h_m] (True, when h_m is on) or Θ_author alone."""
    sim_top_k: int = 16
    """Behaviours SIM's soft search keeps."""
    attention_hidden: int = 32
    """Hidden width of SIM's DIN attention MLP."""
    over_arch_dims: tuple[int, ...] = (64, 32)
    num_experts: int = 4
    expert_dim: int = 32
    tower_dim: int = 16

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.metapaths = tuple(self.metapaths)
        self.over_arch_dims = tuple(self.over_arch_dims)
        if self.backbone not in ("sim", "mmoe"):
            raise ValueError(f"backbone must be 'sim' or 'mmoe', got {self.backbone!r}")
        if min(self.num_users, self.num_authors, self.content_dim) < 1:
            raise ValueError("num_users, num_authors and content_dim must be >= 1")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not a multiple of num_heads {self.num_heads}")
        if self.h_m_enabled and (not self.modalities or not set(self.modalities) <= set(MODALITIES)):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        if not set(self.metapaths) <= set(METAPATHS):
            raise ValueError(f"metapaths must be a subset of {METAPATHS}, got {self.metapaths}")
        if self.use_gie and self.use_h_g and not self.metapaths:
            raise ValueError("use_h_g needs at least one metapath (use_h_g=False is the 'w/o h_g' ablation)")

    @property
    def h_m_enabled(self) -> bool:
        return self.use_mfq and self.use_h_m

    @property
    def h_g_enabled(self) -> bool:
        return self.use_gie and self.use_h_g

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists); `from_dict(to_dict())` round-trips."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMBeeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown MMBeeConfig fields: {sorted(unknown)}")
        return cls(**data)


class SparseArch(nn.Module):
    """Viewer and streamer id embeddings; index 0 is the unknown/cold-start row, which no training impression
    reads: `recsys.mmbee.training.cold_start` fits it after training."""

    def __init__(self, num_users: int, num_authors: int, dim: int) -> None:
        super().__init__()
        self.users = nn.Embedding(num_users + 1, dim)
        self.authors = nn.Embedding(num_authors + 1, dim)
        for table in (self.users, self.authors):
            nn.init.normal_(table.weight, std=0.05)


class MMBeeModel(nn.Module):
    def __init__(
        self,
        config: MMBeeConfig,
        theta_users: torch.Tensor | None = None,
        theta_authors: torch.Tensor | None = None,
    ) -> None:
        """`theta_users` [num_users + 1, theta_dim], `theta_authors` [num_authors + 1, theta_dim]: the GraphCL
        tables (frozen buffers, saved in the state dict). Needed to train with GIE and `use_theta`; left None
        when the state dict will be loaded next."""
        super().__init__()
        self.config = c = config
        e, d = c.embedding_dim, c.hidden_dim
        self.sparse_arch = SparseArch(c.num_users, c.num_authors, e)
        self.fusion_arch: MFQ | None = None
        if c.h_m_enabled:
            self.fusion_arch = MFQ(
                num_authors=c.num_authors,
                content_dim=c.content_dim,
                dim=d,
                num_heads=c.num_heads,
                num_queries=c.num_queries,
                modalities=c.modalities,
                use_queries=c.use_queries,
            )
        self.expansion_arch: GIE | None = None
        if c.use_gie:
            self.expansion_arch = GIE(
                num_users=c.num_users,
                num_authors=c.num_authors,
                theta_dim=c.theta_dim,
                dim=d,
                metapaths=c.metapaths if c.use_h_g else (),
                theta_users=theta_users,
                theta_authors=theta_authors,
                use_theta=c.use_theta,
                query_context_dim=d if self._gie_sees_h_m else 0,
            )
        candidate_dim = e + d * (c.h_m_enabled + c.h_g_enabled + 2 * c.use_gie)
        self.behaviour_arch = BehaviourEncoder(
            content_dim=c.content_dim, num_actions=len(HISTORY_ACTIONS), dim=e
        )
        features_dim = e + candidate_dim + len(USER_DENSE) + len(AUTHOR_DENSE) + e
        self.backbone: SIM | MMoE
        self.over_arch: OverArch | None = None
        if c.backbone == "sim":
            self.backbone = SIM(
                query_dim=candidate_dim, dim=e, top_k=c.sim_top_k, attention_hidden=c.attention_hidden
            )
            self.over_arch = OverArch(features_dim, c.over_arch_dims, len(TASKS))
        else:
            self.backbone = MMoE(
                features_dim,
                num_tasks=len(TASKS),
                num_experts=c.num_experts,
                expert_dim=c.expert_dim,
                tower_dim=c.tower_dim,
            )

    @property
    def _gie_sees_h_m(self) -> bool:
        c = self.config
        return c.h_m_enabled and c.h_g_enabled and c.gie_query_uses_h_m

    def fusion(self, batch: GTRBatch) -> torch.Tensor | None:
        """h_m [B, d] (None when h_m is off). It depends on the streamer and its segment only, not on the
        viewer, so a server can compute it once per (streamer, segment) and pass it to `forward` for every
        viewer."""
        if self.fusion_arch is None:
            return None
        return self.fusion_arch(batch.authors, [getattr(batch, m) for m in self.fusion_arch.modalities])

    def candidate_representation(self, batch: GTRBatch, h_m: torch.Tensor | None = None) -> torch.Tensor:
        """Streamer id embedding ⊕ h_m ⊕ h_g ⊕ Θ_user ⊕ Θ_author (enabled parts only) -> [B, c]."""
        parts = [self.sparse_arch.authors(batch.authors)]  # [B, e]
        if self.fusion_arch is not None:
            h_m = self.fusion(batch) if h_m is None else h_m  # [B, d]
            parts.append(h_m)
        if self.expansion_arch is not None:
            gie = self.expansion_arch(
                batch.users, batch.authors, batch.neighbours, h_m if self._gie_sees_h_m else None
            )
            if gie.h_g is not None:
                parts.append(gie.h_g)  # [B, d]
            parts += [gie.theta_user, gie.theta_author]  # 2 x [B, d]
        return torch.cat(parts, dim=-1)

    def forward(self, batch: GTRBatch, h_m: torch.Tensor | None = None) -> torch.Tensor:
        """-> logits [B, len(TASKS)]. `h_m` [B, d]: the `fusion(batch)` rows computed earlier (a cache);
        ignored when h_m is off."""
        user = self.sparse_arch.users(batch.users)  # [B, e]
        candidate = self.candidate_representation(batch, h_m)  # [B, c]
        dense = torch.cat([batch.user_dense, batch.author_dense], dim=-1)  # [B, FU + FA]
        keys, values = self.behaviour_arch(
            self.sparse_arch.authors(batch.history_authors), batch.history_content, batch.history_actions
        )  # [B, H, e] each
        mask = batch.history_mask  # [B, H]
        if self.over_arch is not None:
            interest = self.backbone(candidate, keys, values, mask)  # [B, e]
            return self.over_arch(torch.cat([user, candidate, dense, interest], dim=-1))
        return self.backbone(torch.cat([user, candidate, dense, masked_mean(values, mask)], dim=-1))


FLAT_INPUT_NAMES = (
    "users",
    "authors",
    "user_dense",
    "author_dense",
    "visual",
    "speech",
    "comments",
    "history_authors",
    "history_content",
    "history_actions",
) + tuple(f"neighbours_{name}" for name in METAPATHS)
"""The order of `flatten_batch`'s tensors (every one has the batch as dimension 0); labels are not inputs."""
SEGMENT_INPUT_NAMES = ("visual", "speech", "comments")
"""The segment token fields: what MFQ reads (and nothing else does)."""
FUSION_INPUT_NAMES = ("authors", *SEGMENT_INPUT_NAMES)
"""`ExportableFusion`'s inputs: what h_m depends on (the streamer and its segment, not the viewer)."""
H_M_SCORER_INPUT_NAMES = tuple(name for name in FLAT_INPUT_NAMES if name not in SEGMENT_INPUT_NAMES) + (
    "h_m",
)
"""`ExportableMMBee(model, takes_h_m=True)`'s inputs: the batch without its segment tokens, then h_m [B, d]."""


def flatten_batch(batch: GTRBatch) -> tuple[torch.Tensor, ...]:
    """The batch's input tensors in `FLAT_INPUT_NAMES` order (every metapath, whatever the model uses)."""
    fixed = tuple(getattr(batch, name) for name in FLAT_INPUT_NAMES[: -len(METAPATHS)])
    return fixed + tuple(batch.neighbours[name] for name in METAPATHS)


def batch_inputs(
    batch: GTRBatch, names: tuple[str, ...], h_m: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """The tensors `names` (`FLAT_INPUT_NAMES` entries, or "h_m" for the `h_m` argument) of `batch`, in order."""
    tensors = []
    for name in names:
        if name == "h_m":
            if h_m is None:
                raise ValueError("these inputs include h_m: pass the fusion rows")
            tensors.append(h_m)
        elif name.startswith("neighbours_"):
            tensors.append(batch.neighbours[name.removeprefix("neighbours_")])
        else:
            tensors.append(getattr(batch, name))
    return tuple(tensors)


class ExportableMMBee(nn.Module):
    """`forward(*inputs)` -> GTR probability sigmoid(logit of task 0) [B]; a flat tensor signature for
    `torch.export` (the same for every config, so serving code does not depend on ablations).

    `takes_h_m=False`: `inputs` are `flatten_batch(batch)` (`FLAT_INPUT_NAMES`), h_m is computed inside.
    `takes_h_m=True` (a model with h_m on): `inputs` are `H_M_SCORER_INPUT_NAMES`, the segment tokens replaced
    by the `ExportableFusion` rows h_m [B, d] computed earlier (and cached per streamer and segment by the
    server); the scores are `model(batch, h_m)`'s."""

    def __init__(self, model: MMBeeModel, takes_h_m: bool = False) -> None:
        super().__init__()
        if takes_h_m and model.fusion_arch is None:
            raise ValueError("takes_h_m needs a model with h_m on (use_mfq and use_h_m)")
        self.model = model
        self.takes_h_m = takes_h_m

    @property
    def input_names(self) -> tuple[str, ...]:
        return H_M_SCORER_INPUT_NAMES if self.takes_h_m else FLAT_INPUT_NAMES

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        names = self.input_names
        if len(inputs) != len(names):
            raise ValueError(f"expected {len(names)} tensors ({names}), got {len(inputs)}")
        named = dict(zip(names, inputs, strict=True))
        h_m = named.pop("h_m", None)
        neighbours = {name: named.pop(f"neighbours_{name}") for name in METAPATHS}
        users = named["users"]
        if h_m is not None:  # the model reads h_m instead of the tokens: empty [B, 0, 0] stand-ins
            named.update({name: h_m.new_zeros(users.shape[0], 0, 0) for name in SEGMENT_INPUT_NAMES})
        labels = torch.zeros(users.shape[0], len(TASKS), dtype=named["visual"].dtype, device=users.device)
        batch = GTRBatch(**named, neighbours=neighbours, labels=labels)
        return torch.sigmoid(self.model(batch, h_m)[:, 0])


class ExportableFusion(nn.Module):
    """`forward(authors [B], visual, speech, comments [B, L, D])` -> h_m [B, d] (`MMBeeModel.fusion`); every
    segment field is an input whatever `modalities` the model fuses (one signature for every config)."""

    def __init__(self, model: MMBeeModel) -> None:
        super().__init__()
        if model.fusion_arch is None:
            raise ValueError("the model has no h_m to export (use_mfq or use_h_m is off)")
        self.fusion_arch = model.fusion_arch

    def forward(
        self, authors: torch.Tensor, visual: torch.Tensor, speech: torch.Tensor, comments: torch.Tensor
    ) -> torch.Tensor:
        tokens = {"visual": visual, "speech": speech, "comments": comments}
        return self.fusion_arch(authors, [tokens[m] for m in self.fusion_arch.modalities])  # [B, d]
