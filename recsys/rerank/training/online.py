"""Online list-wise RL on a stream of requests: LDRO or GRPO, one update per batch, resumable.

    history = run_online(student, DriftingStream(seed=0, batch_size=32), OnlineConfig(method="ldro", steps=300))

Each step t:
1. the stream's batch t (`stream.batch(t)`: requests and their hidden user, deterministic in (seed, t));
2. the policy's greedy page is scored by the TRUE expected utility (`user.utility`), as % of the brute-force
   optimum of the same batch (a ratio of means over the requests, as the simulator reports it), so curves are
   comparable across phases whose optimum differs; the same for the mean of the K samples;
3. K pages per request by vectorised Gumbel-max (`decoding.sample`, the sampling generator), and their per-slot
   log-probs recomputed with gradient (`policy.step_logits`, masked as in decoding);
4. one observed reward per page from the user (sampled clicks, the reward generator) — when the user exposes
   `sample_engagement` (the simulator's `PageUser` does) the same draw also gives each slot's reward (the
   options-weighted engagement of the slot plus an m-th of the page's diversity term; they sum to the page's
   reward), which LDRO's slot credit reads and GRPO ignores;
5. one AdamW step on the method's loss (`policy_gradient`), gradient norm clipped.

Fairness: both methods see the same stream, the same generator seeds, K, optimizer, lr, clipping and steps; the
loss differs (samples diverge once the policies do), and so does the KL anchor where the configs say so: the
drift comparison's defaults (`drift.DRIFT_CONFIGS`) anchor LDRO to the student it starts from and keep GRPO
textbook (no anchor). The history records each step's mean per-slot entropy along the sampled pages, so a
collapse of the policy shows.

The KL anchor's reference is `reference` or, when None, a frozen copy of `student` as passed in (call with the
initial student again to resume: the copy is taken before the checkpoint loads).

Checkpoints (`checkpoint_dir`, every `checkpoint_every` steps and at the end): `accelerator.save_state` (student,
optimizer, global RNG states) in `step-XXXXXXXX/`, beside `online_state.pt` (step, history, both generators'
states, the running scale). A checkpoint is written to `step-XXXXXXXX.tmp` and renamed when complete. `run_online`
resumes from the newest complete one: 3 steps, stop, 3 more equal 6 straight (weights and history; tested).

One process on the CPU: a stream is one sequence of batches (accelerate runs backward and the checkpoints; no
DDP), and the user model lives on the CPU. The student stays in eval mode (no dropout), so the log-probs of the
sampled pages are those of the policy that served them.
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from recsys.data.pages import OBJECTIVES, OPTIONS, PageBatch, PageUtility, page_diversity
from recsys.rerank.models import decoding
from recsys.rerank.simulator.optimum import brute_force_optimum
from recsys.rerank.training.policy_gradient import (
    LDROConfig,
    RunningScale,
    examination_weights,
    grpo_loss,
    ldro_loss,
)

logger = logging.getLogger(__name__)

STATE_FILE = "online_state.pt"
_PREFIX = "step-"
_TMP = ".tmp"
METHODS = ("ldro", "grpo")


class StreamRequests(Protocol):
    batch: PageBatch
    user: PageUtility


class RequestStream(Protocol):
    """What `run_online` reads from a stream (`simulator.stream.DriftingStream`)."""

    def batch(self, step: int) -> StreamRequests: ...

    def phase(self, step: int) -> int: ...


@dataclass(frozen=True)
class OnlineConfig:
    method: Literal["ldro", "grpo"] = "ldro"
    steps: int = 300
    """Total steps; a resumed run continues up to this many."""
    samples_per_request: int = 16
    """K pages sampled per request (GRPO's group)."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    kl_weight: float = 0.0
    """beta of the KL anchor to the reference (either method; the drift comparison anchors LDRO only)."""
    ldro: LDROConfig = LDROConfig()
    """LDRO's own knobs (ignored by GRPO)."""
    scale_decay: float = 0.95
    """EMA decay of LDRO's running reward scale (`RunningScale`; used when ldro.rank_share < 1)."""
    seed: int = 0
    """Seeds the sampling and reward generators (the stream has its own seed)."""
    checkpoint_every: int = 50
    """Steps between checkpoints (with a checkpoint_dir); the last step is always saved."""
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("steps", "samples_per_request", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.kl_weight < 0:
            raise ValueError(f"lr must be > 0 and kl_weight >= 0, got {self.lr}, {self.kl_weight}")


@dataclass
class OnlineHistory:
    """One entry per step (columns), in step order."""

    step: list[int] = field(default_factory=list)
    phase: list[int] = field(default_factory=list)
    greedy_pct: list[float] = field(default_factory=list)
    """True expected utility of the greedy pages, % of the brute-force optimum of the step's batch."""
    sample_pct: list[float] = field(default_factory=list)
    """The same for the K sampled pages (what the stream served)."""
    reward: list[float] = field(default_factory=list)
    """Mean observed (sampled) reward of the K pages."""
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    """Mean per-slot entropy (nats) of the policy's step distributions along the K sampled pages."""

    def append(self, **values: float) -> None:
        for name, value in values.items():
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.step)


def observe(
    user: PageUtility, batch: PageBatch, orders: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One user's observed reward of each page [B, K], and each slot's share of it [B, K, m] (None when the user
    cannot say per slot). One draw: the slot rewards sum to the page rewards."""
    sample_engagement = getattr(user, "sample_engagement", None)
    if sample_engagement is None:
        return user.sample_reward(orders, generator), None
    engagement = sample_engagement(orders, generator)  # [B, K, m, O]
    weights = batch.options[:, : len(OBJECTIVES)].to(engagement.device).view(-1, 1, 1, len(OBJECTIVES))
    diversity = batch.options[:, OPTIONS.index("diversity")].to(engagement.device).view(-1, 1, 1)
    slots = orders.shape[-1]
    slot_rewards = (engagement * weights).sum(-1) + diversity * page_diversity(batch, orders).unsqueeze(
        -1
    ) / slots
    return slot_rewards.sum(-1), slot_rewards


def percent_of_optimum(utility: torch.Tensor, optimum: torch.Tensor) -> float:
    """100 x mean utility / mean optimal utility over the requests (a ratio of means)."""
    return float(100.0 * utility.mean() / optimum.mean())


def run_online(
    student: nn.Module,
    stream: RequestStream,
    config: OnlineConfig,
    *,
    reference: nn.Module | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> OnlineHistory:
    """Train `student` in place on `stream` (module docstring); the history of every step, resumed ones included.

    `stop_after` ends this call after that many steps, as an interruption would (for resume tests)."""
    accelerator = Accelerator(cpu=True)
    if reference is None and config.kl_weight > 0:
        reference = copy.deepcopy(student)
    if reference is not None:
        reference = reference.to(accelerator.device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    student, optimizer = accelerator.prepare(student, optimizer)
    sampling = torch.Generator().manual_seed(config.seed)
    rewarding = torch.Generator().manual_seed(config.seed + 1_000_003)
    scale = RunningScale(config.scale_decay)
    history = OnlineHistory()
    start = 0

    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    latest = latest_checkpoint(directory) if directory is not None else None
    if latest is not None:
        accelerator.load_state(str(latest))
        state = torch.load(latest / STATE_FILE, weights_only=True)
        start = state["step"]
        history = OnlineHistory(**state["history"])
        sampling.set_state(state["sampling"])
        rewarding.set_state(state["rewarding"])
        scale.load_state_dict(state["scale"])
        logger.info("resumed online %s from %s at step %d", config.method, latest, start)

    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    bar = tqdm(range(start, end), desc=f"online {config.method}", disable=not progress, unit="step")
    student.eval()  # no dropout: the sampled pages' log-probs are the served policy's
    for step in bar:
        requests = stream.batch(step)
        batch, user = requests.batch, requests.user
        record = _update(
            student, reference, optimizer, accelerator, batch, user, config, sampling, rewarding, scale
        )
        history.append(step=step, phase=stream.phase(step), **record)
        bar.set_postfix(greedy=f"{record['greedy_pct']:.1f}%")
        done = step + 1
        if directory is not None and (done % config.checkpoint_every == 0 or done == end):
            _save(accelerator, directory, done, history, sampling, rewarding, scale, config.keep_checkpoints)
    return history


def _update(
    student: nn.Module,
    reference: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    batch: PageBatch,
    user: PageUtility,
    config: OnlineConfig,
    sampling: torch.Generator,
    rewarding: torch.Generator,
    scale: RunningScale,
) -> dict[str, float]:
    """Score the serving policy, sample, observe, step once: the step's record."""
    model = accelerator.unwrap_model(student)
    with torch.no_grad():
        _, optimum = brute_force_optimum(batch, user)  # [B]
        greedy = decoding.greedy(model, batch).orders.unsqueeze(1)  # [B, 1, m]
        greedy_pct = percent_of_optimum(user.utility(greedy), optimum)
    orders, _ = decoding.sample(model, batch, config.samples_per_request, sampling)  # [B, K, m], no gradient
    steps = decoding.step_log_probs(model.step_logits(batch, orders), orders, batch)  # [B, K, m, n]
    log_probs = decoding.chosen_log_probs(steps, orders)  # [B, K, m], differentiable
    entropy = slot_entropy(steps)  # [B, K, m], differentiable
    with torch.no_grad():
        sample_pct = percent_of_optimum(user.utility(orders), optimum)
    rewards, slot_rewards = observe(user, batch, orders, rewarding)
    reference_log_probs = None
    if reference is not None and config.kl_weight > 0:
        with torch.no_grad():
            reference_log_probs = _page_log_probs(reference, batch, orders)
    if config.method == "grpo":
        out = grpo_loss(
            log_probs, rewards, reference_log_probs=reference_log_probs, kl_weight=config.kl_weight
        )
    else:
        out = ldro_loss(
            log_probs,
            rewards,
            slot_rewards=slot_rewards,
            position_weights=examination_weights(batch.num_slots, batch.layout),
            reference_log_probs=reference_log_probs,
            kl_weight=config.kl_weight,
            config=config.ldro,
            scale=scale.update(rewards) if config.ldro.rank_share < 1.0 else None,
            entropies=entropy,
        )
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(out.loss)
    accelerator.clip_grad_norm_(student.parameters(), config.grad_clip)
    optimizer.step()
    return {
        "greedy_pct": greedy_pct,
        "sample_pct": sample_pct,
        "reward": float(rewards.mean()),
        "loss": float(out.loss.detach()),
        "kl": float(out.kl),
        "entropy": float(entropy.detach().mean()),
    }


def _page_log_probs(policy: nn.Module, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
    """The masked per-slot log-prob of each page's items under `policy`: orders [B, K, m] -> [B, K, m]."""
    steps = decoding.step_log_probs(policy.step_logits(batch, orders), orders, batch)  # [B, K, m, n]
    return decoding.chosen_log_probs(steps, orders)


def slot_entropy(step_log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each slot's distribution over the available candidates: [B, K, m, n] -> [B, K, m]
    (unavailable candidates have probability exp(UNAVAILABLE) = 0 and add nothing)."""
    return -(step_log_probs.exp() * step_log_probs).sum(dim=-1)


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete `step-XXXXXXXX` checkpoint of `directory`, or None."""
    if not directory.is_dir():
        return None
    complete = [
        path
        for path in directory.iterdir()
        if path.name.startswith(_PREFIX) and not path.name.endswith(_TMP) and (path / STATE_FILE).is_file()
    ]
    return max(complete, key=lambda path: int(path.name[len(_PREFIX) :]), default=None)


def _save(
    accelerator: Accelerator,
    directory: Path,
    step: int,
    history: OnlineHistory,
    sampling: torch.Generator,
    rewarding: torch.Generator,
    scale: RunningScale,
    keep: int,
) -> None:
    final = directory / f"{_PREFIX}{step:08d}"
    tmp = directory / (final.name + _TMP)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    accelerator.save_state(str(tmp))
    state = {
        "step": step,
        "history": asdict(history),
        "sampling": sampling.get_state(),
        "rewarding": rewarding.get_state(),
        "scale": scale.state_dict(),
    }
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    older = sorted(
        (p for p in directory.iterdir() if p.name.startswith(_PREFIX) and not p.name.endswith(_TMP)),
        key=lambda path: int(path.name[len(_PREFIX) :]),
    )
    for path in older[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
