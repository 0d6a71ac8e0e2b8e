"""Streams of requests whose user drifts over time: the online RL's environment.

What drifts (our choice): only the hidden per-category taste (`PageUser.taste`, a multiplier on ctr that the
features never show), so the upstream scores stay as informative as before while the best page changes.
Steps are grouped in phases of `phase_length` steps. Phase 0 is the stationary world (taste 1 everywhere: where
the logs and the teacher come from); every later phase draws a new taste: `boosted` random categories x `boost`,
`damped` others x `damp`, the rest 1 -- an abrupt change at each phase boundary (a drift point). Optionally, with
`within_phase_drift` > 0, the log-taste also moves slowly within a phase: log taste(t) = log taste(phase)
+ within_phase_drift * (t / phase_length) * d, with d ~ N(0, 1) per category drawn once per phase.

How much a drift point matters (seed 3, 1000 requests at each of the first three drift points, n = 8, m = 4):
the optimal page changes on 62-88% of the requests, and the previous phase's optimal pages reach 82-95% of the
new optimum (score-sort: 80-81%).

`batch(step)` is deterministic in (seed, step) and needs no earlier step (random access), so a resumed training
run sees the same requests and the same user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.pages import CATEGORIES
from recsys.rerank.simulator.user import UserParams
from recsys.rerank.simulator.world import Requests, WorldParams, generate_requests

_REQUESTS, _TASTE, _WITHIN = 0, 1, 2  # tags that keep the stream's random draws independent


def _derived_seed(*entropy: int) -> int:
    """A 63-bit seed from several integers (no collisions between e.g. (seed, step) and (seed + 1, step - 1))."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class DriftingStream:
    """Batches of `batch_size` requests per step whose hidden taste changes every `phase_length` steps."""

    seed: int
    batch_size: int
    num_candidates: int = 8
    num_slots: int = 4
    phase_length: int = 100
    boosted: int = 2
    damped: int = 2
    boost: float = 2.0
    damp: float = 0.3
    within_phase_drift: float = 0.0
    layout: str | None = None
    options: str = "default"
    author_caps: bool = True
    params: UserParams = UserParams()
    world: WorldParams = WorldParams()

    def __post_init__(self) -> None:
        if self.phase_length <= 0:
            raise ValueError(f"phase_length must be > 0, got {self.phase_length}")
        if self.boosted + self.damped > len(CATEGORIES):
            raise ValueError(f"boosted + damped must be at most {len(CATEGORIES)} categories")

    def phase(self, step: int) -> int:
        """The phase of this step (0: the stationary world)."""
        return step // self.phase_length

    def is_drift_point(self, step: int) -> bool:
        """Whether the taste changes abruptly at this step (the first step of every phase after 0)."""
        return step > 0 and step % self.phase_length == 0

    def taste(self, step: int) -> torch.Tensor:
        """The hidden taste at this step: float [len(CATEGORIES)]."""
        phase = self.phase(step)
        if phase == 0:
            return torch.ones(len(CATEGORIES))
        generator = torch.Generator().manual_seed(_derived_seed(self.seed, _TASTE, phase))
        shuffled = torch.randperm(len(CATEGORIES), generator=generator)
        taste = torch.ones(len(CATEGORIES))
        taste[shuffled[: self.boosted]] = self.boost
        taste[shuffled[self.boosted : self.boosted + self.damped]] = self.damp
        if self.within_phase_drift > 0:
            direction = torch.randn(
                len(CATEGORIES),
                generator=torch.Generator().manual_seed(_derived_seed(self.seed, _WITHIN, phase)),
            )
            progress = (step % self.phase_length) / self.phase_length
            taste = taste * torch.exp(self.within_phase_drift * progress * direction)
        return taste

    def batch(self, step: int) -> Requests:
        """The requests of this step, deterministic in (seed, step)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return generate_requests(
            self.batch_size,
            self.num_candidates,
            self.num_slots,
            seed=_derived_seed(self.seed, _REQUESTS, step),
            layout=self.layout,
            options=self.options,
            author_caps=self.author_caps,
            taste=self.taste(step),
            params=self.params,
            world=self.world,
        )
