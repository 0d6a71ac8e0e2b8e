"""One supervised training loop for every offline stage (evaluator, teacher, distillation), on accelerate.

A stage is a model, a loss `loss_fn(model, rows) -> scalar` over a minibatch of row indices, and a number of rows.
The loop shuffles the rows by (seed, epoch) only, steps AdamW with gradient clipping, shows a tqdm bar, and —
given a `checkpoint_dir` — saves `accelerator.save_state` (model, optimizer, RNG states) plus the step at the end
of every epoch, then resumes from the newest one: a run stopped after an epoch and started again ends with the
same weights as an uninterrupted one (tested). Multi-process data parallelism is accelerate's (`accelerate
launch`); our stages are small enough that the CPU default is one process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

STATE_FILE = "loop_state.pt"


@dataclass(frozen=True)
class StageConfig:
    epochs: int = 4
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    progress: bool = True


def fit_stage(
    name: str,
    model: nn.Module,
    loss_fn: Callable[[nn.Module, np.ndarray], torch.Tensor],
    num_rows: int,
    config: StageConfig,
    *,
    checkpoint_dir: Path | None = None,
    stop_after_epochs: int | None = None,
    generators: tuple[torch.Generator, ...] = (),
) -> list[float]:
    """Train `model` in place; returns the mean loss of each epoch run by this call.

    `generators`: the ones `loss_fn` draws from; their states are checkpointed and restored with the rest.
    `stop_after_epochs` ends the call early, as an interruption would (for resume tests)."""
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    first_epoch = _resume(accelerator, checkpoint_dir, generators)
    steps_per_epoch = max(1, -(-num_rows // config.batch_size))
    losses = []
    model.train()
    for epoch in range(first_epoch, config.epochs):
        if stop_after_epochs is not None and epoch - first_epoch >= stop_after_epochs:
            break
        order = np.random.default_rng([config.seed, epoch]).permutation(num_rows)
        torch.manual_seed(config.seed * 1000 + epoch)  # any sampling inside loss_fn replays on resume
        total = 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{name} epoch {epoch + 1}/{config.epochs}",
            disable=not config.progress,
            leave=False,
        )
        for step in bar:
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = loss_fn(model, rows)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        losses.append(total / steps_per_epoch)
        logger.info("%s epoch %d: loss %.5f", name, epoch + 1, losses[-1])
        if checkpoint_dir is not None:
            _save(accelerator, checkpoint_dir, epoch + 1, generators)
    model.eval()
    return losses


def _save(
    accelerator: Accelerator, directory: Path, epochs_done: int, generators: tuple[torch.Generator, ...]
) -> None:
    target = directory / f"epoch-{epochs_done:04d}"
    accelerator.save_state(str(target))
    states = [g.get_state() for g in generators]
    torch.save({"epochs_done": epochs_done, "generators": states}, target / STATE_FILE)


def _resume(accelerator: Accelerator, directory: Path | None, generators: tuple[torch.Generator, ...]) -> int:
    """Load the newest complete checkpoint of `directory`; the first epoch still to run."""
    if directory is None or not directory.exists():
        return 0
    done = sorted(p for p in directory.glob("epoch-*") if (p / STATE_FILE).exists())
    if not done:
        return 0
    accelerator.load_state(str(done[-1]))
    state = torch.load(done[-1] / STATE_FILE)
    for generator, saved in zip(generators, state.get("generators", []), strict=False):
        generator.set_state(saved)
    epochs_done = state["epochs_done"]
    logger.info("resumed from %s", done[-1])
    return int(epochs_done)
