"""Train a GTR model with accelerate: one code path for a CPU, one GPU and multi-GPU (or multi-process CPU) DDP,
with checkpoints that resume to the same weights as an uninterrupted run.

    result = train(model, train_ds, val_ds, TrainConfig(epochs=3, output_dir="runs/mmbee"))
    accelerate launch --num_processes 4 my_script.py   # the same call, data-parallel

Data path. A dataset is anything with `len(ds)`, `ds.batch(indices) -> GTRBatch`, `ds.labels` [N, T] and
`ds.groups` [N] (`GTRDataset` from `recsys.data.dataset`, or `testing.InMemoryGTRDataset`). The DataLoader
iterates *row indices*: its sampler yields a permutation of the rows, its batch sampler cuts it into chunks, and
its collate_fn calls `ds.batch(chunk)` once per chunk (no per-row Python objects). `accelerator.prepare` shards
those chunks across processes (process p takes chunks p, p + P, ...) and moves each batch to the device through
`GTRBatch.to`. With P processes the global batch is `batch_size x P` rows. accelerate's `even_batches` keeps every
process at the same number of steps (DDP needs it): when the rows do not fill the last global batch, it is
completed with rows from the start of the epoch, so a few rows are seen twice; with N a multiple of
`batch_size x P` every row is seen exactly once per epoch (tested on two processes).

Determinism and resume. The epoch's permutation is a function of (seed, epoch) only (`EpochShuffle`), the data
loader never draws from the global RNG (it has its own generator), and `accelerator.save_state` stores the model,
the optimizer and every process's RNG states; our own loop state (step, best weights, history, running loss,
patience counter) goes beside it in `trainer_state.pt`. Resuming loads the newest complete checkpoint of
`output_dir/checkpoints/`, recomputes the epoch and the position in it from the step, skips the batches already
seen (`accelerator.skip_first_batches`) and continues: the weights equal an uninterrupted run's (tested to 1e-6,
mid-epoch included). A checkpoint is written to `step-XXXXXXXX.tmp` and renamed when complete, so a crash while
saving never leaves a checkpoint that resume would pick up.

Evaluation. Every `eval_every` steps (0: at the end of each epoch) the validation rows are scored (sharded, then
gathered with `gather_for_metrics`, which drops the padding rows) and gift AUC, UAUC/GAUC over `ds.groups`, the
validation loss, the gift log-loss and the mean predicted vs observed GTR (calibration) are recorded. The model is
selected on gift AUC (*our* choice: the ranking metric the paper reports; the log-loss is recorded beside it), the
best weights are kept in memory and in each checkpoint, and restored at the end (`restore_best`). `patience`
evaluations without improvement stop training early.

Variance reducers (each off unless set):
- `ema_decay`: an exponential moving average of the weights (`torch.optim.swa_utils.AveragedModel` with
  `get_ema_multi_avg_fn`), updated after every optimizer step. When on, evaluation, best-weight selection and the
  weights the model ends with (hence the export) are the EMA's, not the raw step's. The average is registered with
  accelerate (`register_for_checkpointing`), so `save_state` / `load_state` keep it and resume stays exact.
  Buffers are not averaged but copied (MMBee's only buffers are the frozen Θ tables).
- `lr_schedule` + `warmup_ratio`: linear warm-up over the first `warmup_ratio` of all steps, then constant,
  cosine or linear decay to 0 at the last step. The learning rate is a function of the global step only (set on
  the optimizer before each step), so there is no scheduler state to checkpoint and resume replays it exactly;
  "all steps" is `epochs x steps per epoch`, which `max_steps` does not shorten (it stands for an interruption).

Throughput (`samples_per_second`) counts training rows over all processes per second of training steps (data
loading included; evaluation and checkpoint time excluded).

One `Accelerator` per `train` call: `prepare` registers the model and optimizer with it and its checkpoints
hold everything registered. accelerate keeps one process-wide state, so every Accelerator of a process must
agree on `mixed_precision` and device.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from recsys.data.batches import GTRBatch
from recsys.metrics.ranking import auc, grouped_auc
from recsys.mmbee.training.wrapper import DEFAULT_TASK_WEIGHTS, GTRTrainWrapper

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
_PREFIX = "step-"
_TMP = ".tmp"
LR_SCHEDULES = ("constant", "cosine", "linear")


class GTRRows(Protocol):
    """What `train` reads from a dataset."""

    labels: np.ndarray
    """[N, T] float, `recsys.data.batches.TASKS` order."""
    groups: np.ndarray
    """[N] group (viewer) of each row, for UAUC/GAUC."""

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> GTRBatch: ...


@dataclass
class TrainConfig:
    epochs: int = 3
    """Total epochs; a resumed run continues up to this many."""
    batch_size: int = 256
    """Rows per step and process (global batch: batch_size x processes)."""
    eval_batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    grad_clip: float | None = 1.0
    """Max global gradient norm; None: no clipping."""
    task_weights: tuple[float, ...] = DEFAULT_TASK_WEIGHTS
    """Loss weight of each task (`GTRTrainWrapper`); a SIM backbone sets the auxiliary ones to 0."""
    gift_pos_weight: float | None = None
    eval_every: int = 0
    """Steps between evaluations; 0: at the end of each epoch. The last step is always evaluated."""
    patience: int = 0
    """Evaluations without a better gift AUC before stopping; 0: never stop early."""
    num_workers: int = 0
    mixed_precision: Literal["no", "bf16"] = "no"
    cpu: bool = False
    """Train on the CPU even when an accelerator device is present."""
    output_dir: str | None = None
    """Where checkpoints go (`output_dir/checkpoints/step-XXXXXXXX/`); None: no checkpoints, no resume."""
    checkpoint_every: int = 0
    """Steps between checkpoints; 0: at the end of each epoch. The last step is always saved."""
    keep_checkpoints: int = 2
    resume: bool = True
    """Continue from the newest checkpoint in output_dir when there is one."""
    max_steps: int | None = None
    """Stop after this many steps in all (resumed ones included) and checkpoint, as if interrupted there."""
    restore_best: bool = True
    """End with the weights of the best evaluation (else the last step's)."""
    progress: bool = True
    """tqdm progress bar (main process only)."""
    log_every: int = 50
    ema_decay: float | None = None
    """Decay of the weights' exponential moving average (e.g. 0.99); None: no EMA. See the module docstring."""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate shape after warm-up: constant, or cosine / linear decay to 0 at the last step."""
    warmup_ratio: float = 0.0
    """Fraction of all steps with a linear warm-up from 0 to `lr`."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "patience", "num_workers", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        self.task_weights = tuple(float(w) for w in self.task_weights)

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of optimizer step `step` (0-based) of `total_steps`."""
        warmup = round(self.warmup_ratio * total_steps)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        if self.lr_schedule == "constant":
            return self.lr
        progress = (step - warmup) / max(1, total_steps - warmup)  # 0 at the first decayed step
        if self.lr_schedule == "linear":
            return self.lr * (1.0 - progress)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class EvalRecord:
    step: int
    epoch: float
    """Epochs done at this evaluation (fractional mid-epoch)."""
    train_loss: float
    """Mean training loss since the previous evaluation, over all processes."""
    val_loss: float
    auc: float
    """Gift AUC: the selection metric."""
    uauc: float
    gauc: float
    gift_logloss: float
    predicted_gtr: float
    """Mean predicted gift probability on the validation rows ..."""
    observed_gtr: float
    """... and the observed gift rate (calibration: the two should match)."""


@dataclass
class TrainResult:
    best_auc: float
    best_step: int
    """Step of the best evaluation (-1: none had a finite AUC)."""
    history: list[EvalRecord]
    steps: int
    """Steps done in all (resumed ones included)."""
    epochs: float
    samples: int
    """Training rows processed by this call over all processes."""
    train_seconds: float
    samples_per_second: float
    stopped_early: bool
    resumed_from: str | None
    checkpoint: str | None
    """Newest checkpoint written (None without output_dir)."""
    num_processes: int = 1
    losses: list[float] = field(default_factory=list)
    """Training loss of each evaluation interval (the same numbers as history's train_loss)."""


class EpochShuffle(Sampler[int]):
    """A permutation of range(n) that depends on (seed, epoch) only, so a resumed run replays it exactly."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class _RowIndices(Dataset):
    """The dataset the DataLoader sees: row i is i; `__getitems__` hands a whole chunk to collate at once."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: list[int]) -> list[int]:
        return indices


class _Collate:
    """Picklable collate_fn (num_workers > 0): one `ds.batch` call per chunk of row indices."""

    def __init__(self, ds: GTRRows, with_indices: bool) -> None:
        self.ds = ds
        self.with_indices = with_indices

    def __call__(self, indices: list[int]):
        index = np.asarray(indices, dtype=np.int64)
        batch = self.ds.batch(index)
        return (torch.from_numpy(index), batch) if self.with_indices else batch


@dataclass
class _LoopState:
    """Everything of the loop that a checkpoint must restore besides model, optimizer and RNG."""

    step: int = 0
    best_auc: float = float("-inf")
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[EvalRecord] = field(default_factory=list)
    loss_sum: float = 0.0
    loss_count: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "best_auc": self.best_auc,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early,
            "history": [asdict(record) for record in self.history],
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "best_state": self.best_state,
        }

    @classmethod
    def from_dict(cls, state: dict) -> _LoopState:
        state = dict(state)
        state["history"] = [EvalRecord(**record) for record in state["history"]]
        return cls(**state)


def train(
    model: nn.Module,
    train_ds: GTRRows,
    val_ds: GTRRows,
    config: TrainConfig,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train `model` (`forward(GTRBatch) -> logits [B, T]`) in place; see the module docstring."""
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"empty dataset: {len(train_ds)} training rows, {len(val_ds)} validation rows")
    if accelerator is None:
        accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    elif accelerator.mixed_precision != config.mixed_precision:
        logger.warning(
            "the accelerator's mixed precision %r wins over the config's %r",
            accelerator.mixed_precision,
            config.mixed_precision,
        )
    set_seed(config.seed)

    wrapper = GTRTrainWrapper(model, config.task_weights, config.gift_pos_weight)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = EpochShuffle(len(train_ds), config.seed)
    pin = accelerator.device.type == "cuda"
    train_loader = DataLoader(
        _RowIndices(len(train_ds)),
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=_Collate(train_ds, with_indices=False),
        num_workers=config.num_workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(config.seed),  # never the global RNG (resume replays it)
    )
    val_loader = DataLoader(
        _RowIndices(len(val_ds)),
        batch_size=config.eval_batch_size,
        shuffle=False,
        collate_fn=_Collate(val_ds, with_indices=True),
        num_workers=config.num_workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(config.seed),
    )
    wrapper, optimizer, train_loader, val_loader = accelerator.prepare(
        wrapper, optimizer, train_loader, val_loader
    )
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    stop_step = total_steps if config.max_steps is None else min(total_steps, config.max_steps)

    # The moving average lives beside the prepared (maybe DDP-wrapped) model, on its device; every process keeps
    # the same one because DDP keeps the weights equal.
    ema = (
        AveragedModel(
            accelerator.unwrap_model(wrapper).model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay)
        )
        if config.ema_decay is not None
        else None
    )
    if ema is not None:  # saved and restored with the model, optimizer and RNG states
        accelerator.register_for_checkpointing(ema)
    state = _LoopState()
    resumed_from = None
    checkpoint_dir = Path(config.output_dir, CHECKPOINTS) if config.output_dir else None
    if checkpoint_dir is not None and config.resume:
        latest = latest_checkpoint(checkpoint_dir)
        if latest is not None:
            try:
                accelerator.load_state(str(latest))
            # accelerate raises RuntimeError when the checkpoint's custom objects are not the registered ones
            except RuntimeError as error:
                if ema is None:
                    raise
                raise ValueError(
                    f"cannot resume {latest} with ema_decay set ({error}); a checkpoint written without the EMA "
                    "has no EMA state: resume it without ema_decay, or start a new output_dir"
                ) from error
            state = _LoopState.from_dict(
                torch.load(latest / TRAINER_STATE, map_location="cpu", weights_only=True)
            )
            resumed_from = str(latest)
            logger.info("resumed from %s at step %d", latest, state.step)

    last_checkpoint = resumed_from
    num_processes = accelerator.num_processes
    loss_sum = torch.zeros((), device=accelerator.device)  # this process's losses since the last evaluation
    samples = 0
    train_seconds = 0.0
    bar = tqdm(
        total=stop_step,
        initial=min(state.step, stop_step),
        disable=not (config.progress and accelerator.is_local_main_process),
        desc="train",
        unit="step",
    )

    def evaluate_now() -> None:
        nonlocal loss_sum
        record = _evaluate(
            accelerator,
            wrapper,
            ema.module if ema is not None else None,
            val_loader,
            val_ds,
            state,
            loss_sum,
            step=state.step,
            epoch=state.step / steps_per_epoch,
        )
        loss_sum = torch.zeros_like(loss_sum)
        state.loss_sum, state.loss_count = 0.0, 0
        state.history.append(record)
        improved = math.isfinite(record.auc) and record.auc > state.best_auc
        if improved:
            state.best_auc, state.best_step, state.bad_evals = record.auc, state.step, 0
            state.best_state = _cpu_copy(scored_model().state_dict())
        else:
            state.bad_evals += 1
            state.stopped_early = config.patience > 0 and state.bad_evals >= config.patience
        if accelerator.is_main_process:
            logger.info(
                "step %d: val auc %.4f (best %.4f at %d), uauc %.4f, val loss %.4f, train loss %.4f, gtr %.4f/%.4f",
                record.step,
                record.auc,
                state.best_auc,
                state.best_step,
                record.uauc,
                record.val_loss,
                record.train_loss,
                record.predicted_gtr,
                record.observed_gtr,
            )

    def scored_model() -> nn.Module:
        """What evaluation scores and the run ends with: the EMA's weights when on, else the model's."""
        return ema.module if ema is not None else accelerator.unwrap_model(wrapper).model

    def checkpoint_now() -> str:
        nonlocal loss_sum
        # Store the running loss as the mean over processes: mean(a + x_p) = a + mean(x_p), so each process
        # can resume with it and the next evaluation's mean is unchanged.
        state.loss_sum += float(accelerator.reduce(loss_sum.clone(), reduction="mean"))
        loss_sum = torch.zeros_like(loss_sum)
        return _save_checkpoint(accelerator, checkpoint_dir, state, config.keep_checkpoints)

    wrapper.train()
    while state.step < stop_step and not state.stopped_early:
        epoch, position = divmod(state.step, steps_per_epoch)
        sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_loader, position) if position else train_loader
        if position:
            loader.set_epoch(epoch)
        started = time.perf_counter()
        for batch in loader:
            loss, _ = wrapper(batch)
            accelerator.backward(loss)
            if config.grad_clip is not None and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(wrapper.parameters(), config.grad_clip)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(state.step, total_steps)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(accelerator.unwrap_model(wrapper).model)
            loss_sum += loss.detach()
            state.loss_count += 1
            state.step += 1
            samples += len(batch) * num_processes
            bar.update(1)
            if state.step % config.log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            end_of_epoch = state.step % steps_per_epoch == 0
            last = state.step == total_steps
            eval_due = (
                end_of_epoch if config.eval_every == 0 else state.step % config.eval_every == 0
            ) or last
            save_due = (
                (end_of_epoch if config.checkpoint_every == 0 else state.step % config.checkpoint_every == 0)
                or last
                or state.step == stop_step
            )
            if eval_due or save_due:
                train_seconds += time.perf_counter() - started
                if eval_due:
                    evaluate_now()
                    save_due = save_due or state.stopped_early
                if save_due and checkpoint_dir is not None:
                    last_checkpoint = checkpoint_now()
                started = time.perf_counter()
            if state.step >= stop_step or state.stopped_early:
                break
        train_seconds += time.perf_counter() - started
    bar.close()

    if state.stopped_early:
        logger.info(
            "stopped early at step %d: %d evaluations without improvement", state.step, state.bad_evals
        )
    if config.restore_best and state.best_state is not None:
        accelerator.unwrap_model(wrapper).model.load_state_dict(state.best_state)
    elif ema is not None:
        accelerator.unwrap_model(wrapper).model.load_state_dict(ema.module.state_dict())
    accelerator.wait_for_everyone()
    losses = [record.train_loss for record in state.history]
    return TrainResult(
        best_auc=state.best_auc if state.best_step >= 0 else float("nan"),
        best_step=state.best_step,
        history=list(state.history),
        steps=state.step,
        epochs=state.step / steps_per_epoch,
        samples=samples,
        train_seconds=train_seconds,
        samples_per_second=samples / train_seconds if train_seconds > 0 else float("nan"),
        stopped_early=state.stopped_early,
        resumed_from=resumed_from,
        checkpoint=last_checkpoint,
        num_processes=num_processes,
        losses=losses,
    )


@torch.no_grad()
def _evaluate(
    accelerator: Accelerator,
    wrapper: nn.Module,
    scorer: nn.Module | None,
    loader: DataLoader,
    ds: GTRRows,
    state: _LoopState,
    loss_sum: torch.Tensor,
    step: int,
    epoch: float,
) -> EvalRecord:
    train_loss_sum = state.loss_sum + float(accelerator.reduce(loss_sum.clone(), reduction="mean"))
    train_loss = train_loss_sum / state.loss_count if state.loss_count else float("nan")
    inner = accelerator.unwrap_model(wrapper)  # no DDP collectives per forward; autocast stays on its forward
    inner.eval()
    model = scorer if scorer is not None else inner.model  # the EMA's copy when on
    model.eval()
    indices, logits = [], []
    for index, batch in loader:
        batch_logits = model(batch).float()  # [B, T]
        index, batch_logits = accelerator.gather_for_metrics((index, batch_logits))
        indices.append(index.cpu())
        logits.append(batch_logits.cpu())
    inner.train()  # the EMA copy stays in eval mode: it is never trained
    index = torch.cat(indices).numpy()  # [N] every validation row once
    all_logits = torch.cat(logits)  # [N, T]
    labels = torch.as_tensor(np.asarray(ds.labels)[index], dtype=torch.float32)  # [N, T]
    probs = torch.sigmoid(all_logits[:, 0]).numpy()  # [N]
    gift = labels[:, 0].numpy()
    grouped = grouped_auc(gift, probs, np.asarray(ds.groups)[index])
    return EvalRecord(
        step=step,
        epoch=epoch,
        train_loss=train_loss,
        val_loss=float(inner.loss(all_logits, labels)),
        auc=auc(gift, probs),
        uauc=grouped.uauc,
        gauc=grouped.gauc,
        gift_logloss=float(
            torch.nn.functional.binary_cross_entropy_with_logits(all_logits[:, 0], labels[:, 0])
        ),
        predicted_gtr=float(probs.mean()),
        observed_gtr=float(gift.mean()),
    )


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint (`step-XXXXXXXX` with its trainer state) of a directory, or None."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return None
    complete = [
        path
        for path in directory.iterdir()
        if path.name.startswith(_PREFIX) and not path.name.endswith(_TMP) and (path / TRAINER_STATE).is_file()
    ]
    return max(complete, key=lambda path: int(path.name[len(_PREFIX) :]), default=None)


def _save_checkpoint(accelerator: Accelerator, directory: Path, state: _LoopState, keep: int) -> str:
    final = directory / f"{_PREFIX}{state.step:08d}"
    tmp = directory / (final.name + _TMP)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(state.to_dict(), tmp / TRAINER_STATE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        older = sorted(
            (p for p in directory.iterdir() if p.name.startswith(_PREFIX) and p != final),
            key=lambda p: p.name,
        )
        for path in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    return str(final)
