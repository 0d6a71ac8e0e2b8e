"""BPR training with epochs chosen on the validation set, shared by LightGCN and the GIE model.

Both models go through the same loop so the comparison is fair: the same uniform negative sampler (one
negative per training pair, never one of the user's training items), the same batch size, evaluation on the
validation part every `eval_every` epochs, early stopping after `patience` evaluations without a better
validation NDCG@10, and the weights of the best evaluation restored at the end. Only the model and its loss
differ (`BPRTask`). Deterministic for a seed on one thread: the sampler draws from its own numpy Generator.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recsys.mmbee.movielens.protocol import RankingMetrics, Scorer, Split, evaluate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 100
    batch_size: int = 2048
    lr: float = 5e-3
    weight_decay: float = 0.0
    eval_every: int = 2
    patience: int = 5
    """Evaluations without a better validation NDCG@k before stopping."""
    k: int = 10


class BPRTask(Protocol):
    """What the loop needs from a model: its parameters, a loss on triples, and a scorer for evaluation."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> BPRTask: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...

    def bpr_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor: ...

    def scorer(self) -> Scorer: ...


@dataclass
class FitResult:
    best_epoch: int
    best_valid: RankingMetrics | None
    history: list[tuple[int, float, RankingMetrics]] = field(default_factory=list)
    """(epoch, mean training loss, validation metrics) at every evaluation."""
    seconds: float = 0.0


class NegativeSampler:
    """Uniform negatives over items 1..num_items that are not among the user's training items."""

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator):
        self.num_items = train.shape[1] - 1
        self.rng = rng
        rows, cols = train.nonzero()
        self._known = np.sort(rows.astype(np.int64) * train.shape[1] + cols)
        self._width = train.shape[1]

    def is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self._width + items
        found = np.searchsorted(self._known, keys).clip(max=len(self._known) - 1)
        return self._known[found] == keys

    def sample(self, users: np.ndarray) -> np.ndarray:
        items = self.rng.integers(1, self.num_items + 1, size=len(users))
        clash = self.is_known(users, items)
        while clash.any():
            items[clash] = self.rng.integers(1, self.num_items + 1, size=int(clash.sum()))
            clash[clash] = self.is_known(users[clash], items[clash])
        return items


def fit(
    task: BPRTask,
    split: Split,
    config: TrainConfig,
    seed: int,
    desc: str = "train",
    positives: np.ndarray | None = None,
) -> FitResult:
    """Train `task` with BPR on `positives` (default split.train; negatives are never training items of the
    user); keep the epoch with the best validation NDCG@k."""
    positives = split.train if positives is None else positives
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sampler = NegativeSampler(split.matrix("train"), rng)
    optimizer = torch.optim.Adam(task.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = FitResult(best_epoch=0, best_valid=None)
    best_state, stale, started = copy.deepcopy(task.state_dict()), 0, time.perf_counter()
    progress = tqdm(range(1, config.max_epochs + 1), desc=desc, leave=False)
    for epoch in progress:
        task.train()
        order = rng.permutation(len(positives))
        losses = []
        for start in range(0, len(order), config.batch_size):
            pairs = positives[order[start : start + config.batch_size]]  # [B, 2]
            negatives = sampler.sample(pairs[:, 0])
            loss = task.bpr_loss(*(torch.from_numpy(a) for a in (pairs[:, 0], pairs[:, 1], negatives)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if epoch % config.eval_every and epoch != config.max_epochs:
            continue
        valid = _evaluate(task, split, config.k)
        result.history.append((epoch, float(np.mean(losses)), valid))
        progress.set_postfix(loss=f"{np.mean(losses):.4f}", ndcg=f"{valid.ndcg:.4f}", best=result.best_epoch)
        if result.best_valid is None or valid.ndcg > result.best_valid.ndcg:
            result.best_epoch, result.best_valid, stale = epoch, valid, 0
            best_state = copy.deepcopy(task.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    task.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    logger.info("%s: best epoch %d of %d, valid %s", desc, result.best_epoch, epoch, result.best_valid)
    return result


def _evaluate(task: BPRTask, split: Split, k: int) -> RankingMetrics:
    task.train(False)
    with torch.no_grad():
        return evaluate(task.scorer(), split, "valid", k)
