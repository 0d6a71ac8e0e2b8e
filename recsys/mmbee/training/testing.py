"""Small stand-ins for the tests of `recsys.mmbee.training` and `recsys.mmbee.export` (a test file cannot import
another test file under Bazel, so the shared helpers live here).

- `InMemoryGTRDataset`: the dataset protocol `train` reads (`len`, `batch(indices)`, `labels`, `groups`) over one
  big `GTRBatch` held in memory, optionally recording which rows each call asked for (the DDP test counts them).
- `learnable_dataset`: a random batch whose labels depend on its features (so AUC can rise above 0.5).
- `TinyGTRModel`: a few-hundred-parameter model with the MMBee model's interface (`forward(GTRBatch) -> logits
  [B, len(TASKS)]`), dropout (so resume has random state to restore) and a non-trainable buffer (like MMBee's
  Θ tables, which must travel with the weights).
- `tiny_mmbee`: the real `MMBeeModel` at a tiny config that reads `learnable_dataset`'s batches (with random
  Θ tables, as GraphCL would give).
- `reset_accelerate_state`: accelerate keeps one process-wide state; a test that wants another mixed precision
  must clear it first.
- `ddp_worker`: one process of a multi-process CPU (gloo) run of `train`, for `torch.multiprocessing` to spawn;
  the processes meet through a rendezvous file, not a TCP port, so parallel test runs cannot collide.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.data.batches import TASKS, USER_DENSE, GTRBatch, random_batch
from recsys.mmbee.models.mmbee import MMBeeConfig, MMBeeModel

NUM_USERS, NUM_AUTHORS, CONTENT_DIM = 20, 8, 8
"""The id spaces and content width of `learnable_dataset` (random_batch's defaults)."""


class InMemoryGTRDataset:
    """Rows of one `GTRBatch`; `batch(indices)` slices every field (neighbour dict included)."""

    def __init__(self, rows: GTRBatch, record: bool = False) -> None:
        self.rows = rows
        self.labels = rows.labels.numpy()  # [N, T]
        self.groups = rows.users.numpy()  # [N] one group per viewer
        self.record = record
        self.requested: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: np.ndarray) -> GTRBatch:
        if self.record:
            self.requested.append(np.asarray(indices).copy())
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        r = self.rows
        return GTRBatch(
            users=r.users[index],
            authors=r.authors[index],
            user_dense=r.user_dense[index],
            author_dense=r.author_dense[index],
            visual=r.visual[index],
            speech=r.speech[index],
            comments=r.comments[index],
            history_authors=r.history_authors[index],
            history_content=r.history_content[index],
            history_actions=r.history_actions[index],
            neighbours={name: value[index] for name, value in r.neighbours.items()},
            labels=r.labels[index],
        )


def learnable_dataset(
    rows: int, seed: int = 0, gift_rate: float = 0.1, record: bool = False
) -> InMemoryGTRDataset:
    """`random_batch` rows whose gift label is the top `gift_rate` of a linear score of the content and the
    viewer's statistics (plus noise), and whose auxiliary labels follow the content's sign."""
    g = torch.Generator().manual_seed(seed)
    batch = random_batch(
        rows, num_users=NUM_USERS, num_authors=NUM_AUTHORS, content_dim=CONTENT_DIM, generator=g
    )
    signal = batch.visual.mean(dim=(1, 2)) * 4 + batch.user_dense[:, 0]  # [N]
    signal = signal + 0.5 * torch.randn(rows, generator=g)
    gift = signal >= torch.quantile(signal, 1 - gift_rate)
    batch.labels = torch.stack(
        [
            gift.float(),
            (batch.speech.mean(dim=(1, 2)) > 0).float(),
            (batch.comments.mean(dim=(1, 2)) > 0).float(),
        ],
        dim=1,
    )  # [N, T]
    return InMemoryGTRDataset(batch, record=record)


class TinyGTRModel(nn.Module):
    """Id embeddings + mean-pooled content + viewer statistics -> one logit per task."""

    def __init__(
        self,
        num_users: int = 20,
        num_authors: int = 8,
        content_dim: int = 8,
        hidden: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.users = nn.Embedding(num_users + 1, hidden)
        self.authors = nn.Embedding(num_authors + 1, hidden)
        self.content = nn.Linear(3 * content_dim + len(USER_DENSE), hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, len(TASKS))
        self.register_buffer("author_prior", torch.linspace(-0.1, 0.1, num_authors + 1))

    def forward(self, batch: GTRBatch) -> torch.Tensor:
        content = torch.cat(
            [batch.visual.mean(1), batch.speech.mean(1), batch.comments.mean(1), batch.user_dense], dim=-1
        )  # [B, 3D + FU]
        hidden = torch.relu(
            self.content(content) + self.users(batch.users) + self.authors(batch.authors)
        )  # [B, H]
        return self.head(self.dropout(hidden)) + self.author_prior[batch.authors].unsqueeze(-1)  # [B, T]


def tiny_mmbee(backbone: str = "sim", seed: int = 0) -> MMBeeModel:
    """A 20k-parameter MMBee (every module on) for `learnable_dataset`'s id spaces."""
    torch.manual_seed(seed)
    config = MMBeeConfig(
        num_users=NUM_USERS,
        num_authors=NUM_AUTHORS,
        content_dim=CONTENT_DIM,
        backbone=backbone,
        embedding_dim=16,
        hidden_dim=16,
        theta_dim=8,
        num_queries=2,
        attention_hidden=16,
        over_arch_dims=(16,),
        expert_dim=16,
        tower_dim=8,
    )
    g = torch.Generator().manual_seed(seed + 1)
    theta_users = torch.randn(NUM_USERS + 1, 8, generator=g)
    theta_authors = torch.randn(NUM_AUTHORS + 1, 8, generator=g)
    return MMBeeModel(config, theta_users, theta_authors)


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state (mixed precision, device), as accelerate's own tests do."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def ddp_worker(
    rank: int,
    world_size: int,
    rendezvous: str,
    out_dir: str,
    config,
    rows: int,
    val_rows: int,
    dropout: float,
) -> None:
    """Train a `TinyGTRModel` (seed 0) on `learnable_dataset(rows)` as process `rank` of `world_size` and save
    `rank<r>.pt` in out_dir: its final weights, the row chunks its dataset was asked for, and the result."""
    import torch.distributed as dist

    from recsys.mmbee.training.loop import train

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size)
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        train_ds = learnable_dataset(rows, seed=0, record=True)
        val_ds = learnable_dataset(val_rows, seed=1)
        torch.manual_seed(0)
        model = TinyGTRModel(dropout=dropout)
        result = train(model, train_ds, val_ds, config, accelerator=accelerator)
        torch.save(
            {
                "state": {name: t.detach().clone() for name, t in model.state_dict().items()},
                "requested": train_ds.requested,
                "result": result,
                "num_processes": accelerator.num_processes,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()
