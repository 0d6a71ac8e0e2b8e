"""The cold-start rows: what a trained model says about a viewer or a streamer it has never seen.

The serving featurizer (`recsys.mmbee.featurize`) gives an unknown viewer row 0 of the viewer id table, zero
counts, an empty history and no metapath neighbours (Θ row 0 is zero); an unknown streamer likewise, with whatever
segment content the request sends. No training impression has id 0, so row 0 keeps its random initialisation and
the cold-start score is arbitrary: before this step the embedded default scored a new viewer at a mean GTR of 0.092
over the demo's 50 live streams, ten times a known viewer without gifts (0.0095) and twice one with 10+ (0.044).

`fit_cold_start_rows` learns row 0 of both id tables after training, with every other weight frozen: on training
impressions rewritten as the featurizer would see them for an unknown viewer (`as_cold_viewers`) and for an
unknown streamer (`as_cold_streamers`), it minimises the training loss. A new viewer then gets the population's
gift rate for each stream, ranked by what the stream and its streamer show; an unknown streamer, what its content
and the viewer predict. Known ids never read row 0 (history padding is masked), so every other score, and every
metric of `kmono mmbee eval`, is unchanged (tested bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.func import functional_call
from tqdm import tqdm

from recsys.data.batches import METAPATH_SOURCE, GTRBatch
from recsys.data.dataset import cold_start_dense
from recsys.mmbee.training.loop import GTRRows
from recsys.mmbee.training.wrapper import gtr_loss

COLD_TABLES = {"viewer": "sparse_arch.users.weight", "streamer": "sparse_arch.authors.weight"}
"""The id tables whose row 0 is the cold-start row, by the side of the impression it stands for."""


@dataclass(frozen=True)
class ColdStartConfig:
    steps: int = 300
    batch_size: int = 1024
    lr: float = 0.03
    seed: int = 0
    progress: bool = True


def _cold_dense(like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(cold_start_dense()).to(like).expand_as(like)


def _no_neighbours(batch: GTRBatch, source: str) -> dict[str, torch.Tensor]:
    """The batch's metapath lists with those starting from `source` ("user" or "author") all padding."""
    return {
        name: torch.zeros_like(lists) if METAPATH_SOURCE[name] == source else lists
        for name, lists in batch.neighbours.items()
    }


def as_cold_viewers(batch: GTRBatch) -> GTRBatch:
    """The batch with every viewer replaced by an unknown one, as `ServingFeaturizer.batch` builds it."""
    return replace(
        batch,
        users=torch.zeros_like(batch.users),
        user_dense=_cold_dense(batch.user_dense),
        history_authors=torch.zeros_like(batch.history_authors),
        history_content=torch.zeros_like(batch.history_content),
        history_actions=torch.zeros_like(batch.history_actions),
        neighbours=_no_neighbours(batch, "user"),
    )


def as_cold_streamers(batch: GTRBatch) -> GTRBatch:
    """The batch with every streamer replaced by an unknown one (its stream's segment kept: a request sends it)."""
    return replace(
        batch,
        authors=torch.zeros_like(batch.authors),
        author_dense=_cold_dense(batch.author_dense),
        neighbours=_no_neighbours(batch, "author"),
    )


def fit_cold_start_rows(
    model: torch.nn.Module, rows: GTRRows, task_weights, config: ColdStartConfig = ColdStartConfig()
) -> list[float]:
    """Learn row 0 of the viewer and streamer id tables of a trained `model` in place (module docstring);
    returns the loss per step. Each row starts from the mean of the trained rows of its table."""
    model.eval()  # no dropout: the rows are fitted to the model as it serves
    params = dict(model.named_parameters())
    trained = {side: params[name].detach() for side, name in COLD_TABLES.items()}
    cold = {side: table[1:].mean(dim=0).clone().requires_grad_(True) for side, table in trained.items()}
    optimizer = torch.optim.Adam(cold.values(), lr=config.lr)
    device = next(model.parameters()).device  # where training left it (a GPU run leaves it there)
    weights = torch.as_tensor(task_weights, dtype=torch.float32, device=device)
    rng = np.random.default_rng(config.seed)
    losses = []
    for _ in tqdm(range(config.steps), desc="cold-start rows", disable=not config.progress):
        picks = rng.choice(len(rows), size=min(config.batch_size, len(rows)), replace=False)
        batch = rows.batch(picks).to(device)
        tables = {COLD_TABLES[side]: torch.cat([cold[side][None], trained[side][1:]]) for side in COLD_TABLES}
        loss = sum(
            gtr_loss(functional_call(model, tables, (variant,)), variant.labels, weights)
            for variant in (as_cold_viewers(batch), as_cold_streamers(batch))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        for side, name in COLD_TABLES.items():
            params[name][0] = cold[side]
    return losses
