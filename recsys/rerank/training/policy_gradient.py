"""List-wise policy gradients for online reranking: GRPO (the baseline) and LDRO (ours), as pure tensor functions.

Both see the same thing per request: K pages sampled from the policy (`orders` [B, K, m]), each page's chosen
per-slot log-probs `log_probs` [B, K, m] (differentiable; the page's log-prob is their sum) and its observed
streaming reward `rewards` [B, K]. Both are on-policy, one gradient step per batch (so no importance ratio).

GRPO (the baseline, as TRL writes it). Per request b, with mean and unbiased std over its K pages:

    A[b, j]   = (r[b, j] - mean_j r[b, :]) / (std_j r[b, :] + eps)
    L_GRPO    = - mean_{b, j} A[b, j] * sum_k log pi(o[b, j, k] | o[b, j, <k])   (+ the same KL anchor as below)

LDRO, List-wise Decoupled Reranking Optimization. The paper (Dual-Rerank, arXiv 2604.07420) names "double
decoupling" and a "rank-weighted policy objective" but publishes no loss; this is *our* definition.

Decoupling 1, the advantage from the reward's scale and the group's noise. The list advantage is the centred
rank of the page's reward among the request's K pages (average ranks for ties):

    rank[b, j] = #{j' : r[b, j'] < r[b, j]} + 0.5 * #{j' != j : r[b, j'] = r[b, j]}        in [0, K - 1]
    R[b, j]    = (rank[b, j] - (K - 1) / 2) / ((K - 1) / 2)                               in [-1, 1]

optionally blended (`LDROConfig.rank_share` = a < 1) with the group-centred reward over a *running* scale sigma
(an EMA over the stream of the mean within-group std, `RunningScale`), or over the group's largest deviation when
that is larger (one divisor per group: bounded by 1 and still summing to zero):

    c[b, j]      = r[b, j] - mean_j r[b, :]
    A_list[b, j] = a * R[b, j] + (1 - a) * c[b, j] / max(sigma, max_j |c[b, j]|)

Why: std-normalisation divides by the group's own spread, so a near-tied group (a confident policy, only
reward noise between its pages) gets advantages of full size, and the size of every update depends on the
reward's scale in that batch. Ranks are bounded and invariant to any increasing transform of the rewards; the
running scale keeps magnitude information (near-ties give small advantages) without following one batch's
spread. The running scale is our choice over a per-context EMA baseline: in a stream requests do not repeat, so
a per-request baseline has nothing to average; the centre stays the group mean (advantages sum to zero).

Decoupling 2, the list into slots. When the user model returns each slot's observed reward s[b, j, k] (the
per-slot share of the same draw whose sum is r[b, j]), each slot gets its own credit: the centred rank of
s[b, j, k] among the K pages' rewards *at the same slot k* (so position bias cancels), R_slot[b, j, k], and

    A[b, j, k] = (1 - lam) * A_list[b, j] + lam * R_slot[b, j, k]          (lam = `LDROConfig.slot_credit`)

so the gradient does not push every slot of a good page up equally. Without slot rewards lam is 0.

Rank-weighted objective. Slot k's term is weighted by how much it is examined, w[b, k] proportional to
1 / log2(2 + row(k)) (row(k) = k in a single column, k // 2 in the two-column grid: both slots of a row are
seen together), scaled to mean 1 over the m slots so the loss has GRPO's scale:

    L_PG[b, j] = - sum_k w[b, k] * A[b, j, k] * log pi(o[b, j, k] | o[b, j, <k])

KL anchor to a frozen reference policy (the SKD student), k3 estimator on the sampled slots (non-negative,
unbiased for KL(pi || ref)), d = log ref - log pi; and an optional entropy floor on each slot's distribution,
H[b, j, k] = entropy over the candidates available at slot k of page j (off by default):

    KL[b, j]   = sum_k (exp(d[b, j, k]) - d[b, j, k] - 1)
    L_LDRO     = mean_{b, j} (L_PG[b, j] + beta * KL[b, j])
                 + eta * mean_{b, j, k} max(0, h - H[b, j, k])
    (beta = `kl_weight`: 0.05 in the drift comparison, `drift.DRIFT_CONFIGS`; h, eta = `LDROConfig.entropy_floor`,
    `entropy_weight`: eta = 0 by default)

Why the anchor is LDRO's (our choice, measured in `benchmarks/rerank_online.py`): on a drifting stream the
online policy forgets what the distilled student knew and collapses (per-slot entropy 0.5 -> 0.16-0.3 nats
over 300 steps at lr 1e-3; the stationary phase loses 2-3 points of the optimum to reward noise), so after a drift
it can neither explore nor fall back on the student's knowledge of the features. Anchored to the SKD student,
the policy keeps its entropy (~0.5 nats) and moves only where the rewards keep saying so. In the drift
comparison GRPO stays the textbook baseline (beta = 0, TRL's default); `grpo_loss` takes the same term only so
that "GRPO with LDRO's anchor" can be measured as an ablation. The hinge floor pushes entropy up only where it
fell below h; measured alone it speeds recovery less than the anchor and is not in the default.

Properties (tested): per request and slot the advantages sum to zero; |A| <= 1; with a = 1 they are invariant
to positive affine transforms of the rewards (list and slot rewards transformed alike); GRPO's equal the
formula; on a toy policy one step of either loss raises the log-prob of the best page; the anchor pulls back
to the reference; the entropy floor pushes only the slots below h.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.data.pages import LAYOUTS

GRPO_EPS = 1e-4
"""Added to the group std (TRL's GRPO value): groups of equal rewards get zero advantages, not NaN."""


@dataclass(frozen=True)
class LDROConfig:
    """LDRO's own hyper-parameters (defaults: the measured choice, `benchmarks/rerank_online.py`)."""

    rank_share: float = 1.0
    """a: share of the centred-rank advantage in the list advantage; 1 - a: group-centred reward / running scale."""
    slot_credit: float = 0.5
    """lam: share of the per-slot credit in each slot's advantage (used only when slot rewards are observed)."""
    position_weighted: bool = True
    """Weight each slot's term by its examination weight (else every slot weighs 1)."""
    entropy_floor: float = 0.0
    """h: per-slot entropy (nats) below which the hinge penalty acts (0: off)."""
    entropy_weight: float = 0.0
    """eta: weight of the entropy-floor hinge."""

    def __post_init__(self) -> None:
        for name in ("rank_share", "slot_credit"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.entropy_floor < 0 or self.entropy_weight < 0:
            raise ValueError(
                f"entropy_floor and entropy_weight must be >= 0, got {self.entropy_floor}, {self.entropy_weight}"
            )


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    """Scalar to minimise."""
    advantages: torch.Tensor
    """[B, K, m] the advantage each slot's log-prob term was weighted by (GRPO's repeats the list's)."""
    kl: torch.Tensor
    """Scalar: mean k3 KL estimate per page to the reference (0 without one); detached."""


def centered_ranks(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred average ranks along `dim`, in [-1, 1], summing to 0 (all 0 when the dimension has size 1)."""
    values = values.movedim(dim, -1)
    size = values.shape[-1]
    if size < 2:
        return torch.zeros_like(values).movedim(-1, dim)
    below = (values.unsqueeze(-2) < values.unsqueeze(-1)).sum(-1)  # [..., K] how many are smaller
    equal = (values.unsqueeze(-2) == values.unsqueeze(-1)).sum(-1) - 1  # ties, itself excluded
    rank = below.to(values.dtype) + 0.5 * equal.to(values.dtype)
    half = (size - 1) / 2
    return ((rank - half) / half).movedim(-1, dim)


def grpo_advantages(rewards: torch.Tensor, eps: float = GRPO_EPS) -> torch.Tensor:
    """GRPO: (r - mean) / (std + eps) over the K pages of each request (unbiased std): [B, K] -> [B, K]."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def group_spread(rewards: torch.Tensor) -> float:
    """The batch's mean within-group std of the rewards (what `RunningScale` averages): [B, K] -> float."""
    if rewards.shape[-1] < 2:
        return 0.0
    return float(rewards.std(dim=-1).mean())


class RunningScale:
    """EMA over the stream of the within-group reward spread: LDRO's slow scale (decoupling 1)."""

    def __init__(self, decay: float = 0.95, floor: float = 1e-6) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.floor = floor
        self.value: float | None = None

    def update(self, rewards: torch.Tensor) -> float:
        """Fold in this batch's spread and return the scale to use for it."""
        spread = group_spread(rewards)
        self.value = spread if self.value is None else self.decay * self.value + (1 - self.decay) * spread
        return max(self.value, self.floor)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "floor": self.floor, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.floor, self.value = state["decay"], state["floor"], state["value"]


def examination_weights(num_slots: int, layout: torch.Tensor | None = None) -> torch.Tensor:
    """Each slot's examination weight 1 / log2(2 + row), mean 1 over the slots: [B, m] ([1, m] without `layout`).

    `layout` long [B] indexes `pages.LAYOUTS` ("column": row = slot, "grid": row = slot // 2)."""
    slots = torch.arange(num_slots, dtype=torch.float32)
    column = 1.0 / torch.log2(2.0 + slots)
    grid = 1.0 / torch.log2(2.0 + torch.div(slots, 2, rounding_mode="floor"))
    column, grid = column / column.mean(), grid / grid.mean()
    if layout is None:
        return column.unsqueeze(0)
    is_grid = (layout.to("cpu") == LAYOUTS.index("grid")).unsqueeze(-1)  # [B, 1]
    return torch.where(is_grid, grid, column).to(layout.device)


def ldro_advantages(
    rewards: torch.Tensor,
    slot_rewards: torch.Tensor | None = None,
    *,
    config: LDROConfig = LDROConfig(),
    scale: float | None = None,
) -> torch.Tensor:
    """LDRO's per-slot advantages (module docstring): rewards [B, K], slot_rewards [B, K, m] -> [B, K, m].

    `scale` is the running scale sigma (`RunningScale.update`); required when `config.rank_share` < 1. Without
    `slot_rewards` the list advantage is repeated over m = 1 slot (broadcast it against the log-probs)."""
    list_adv = centered_ranks(rewards)  # [B, K]
    if config.rank_share < 1.0:
        if scale is None or not scale > 0:
            raise ValueError(f"rank_share < 1 needs a positive running scale, got {scale}")
        centred = rewards - rewards.mean(dim=-1, keepdim=True)
        # one divisor per group keeps the sum at zero; the group's largest deviation bounds it by 1
        divisor = centred.abs().amax(dim=-1, keepdim=True).clamp(min=scale)
        list_adv = config.rank_share * list_adv + (1 - config.rank_share) * centred / divisor
    if slot_rewards is None or config.slot_credit == 0.0:
        slots = 1 if slot_rewards is None else slot_rewards.shape[-1]
        return list_adv.unsqueeze(-1).expand(*list_adv.shape, slots)
    slot_adv = centered_ranks(slot_rewards, dim=1)  # [B, K, m] rank among the K pages at the same slot
    return (1 - config.slot_credit) * list_adv.unsqueeze(-1) + config.slot_credit * slot_adv


def k3_kl(log_probs: torch.Tensor, reference_log_probs: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(pi || ref) per page from the sampled slots: [B, K, m] -> [B, K] (>= 0)."""
    delta = reference_log_probs - log_probs
    return (delta.exp() - delta - 1.0).sum(dim=-1)


def _anchor(
    log_probs: torch.Tensor, reference_log_probs: torch.Tensor | None, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    if reference_log_probs is None or kl_weight == 0.0:
        zero = log_probs.new_zeros(())
        return zero, zero
    kl = k3_kl(log_probs, reference_log_probs.detach()).mean()
    return kl_weight * kl, kl.detach()


def grpo_loss(
    log_probs: torch.Tensor,
    rewards: torch.Tensor,
    *,
    reference_log_probs: torch.Tensor | None = None,
    kl_weight: float = 0.0,
    eps: float = GRPO_EPS,
) -> PolicyLoss:
    """GRPO on the page log-prob: log_probs [B, K, m] (differentiable), rewards [B, K] -> `PolicyLoss`."""
    advantages = grpo_advantages(rewards.detach(), eps)  # [B, K]
    page_log_probs = log_probs.sum(dim=-1)  # [B, K]
    anchor, kl = _anchor(log_probs, reference_log_probs, kl_weight)
    loss = -(advantages * page_log_probs).mean() + anchor
    return PolicyLoss(loss, advantages.unsqueeze(-1).expand_as(log_probs), kl)


def ldro_loss(
    log_probs: torch.Tensor,
    rewards: torch.Tensor,
    *,
    slot_rewards: torch.Tensor | None = None,
    position_weights: torch.Tensor | None = None,
    reference_log_probs: torch.Tensor | None = None,
    kl_weight: float = 0.0,
    config: LDROConfig = LDROConfig(),
    scale: float | None = None,
    entropies: torch.Tensor | None = None,
) -> PolicyLoss:
    """LDRO (module docstring): log_probs [B, K, m] (differentiable), rewards [B, K], slot_rewards [B, K, m] or
    None, position_weights [B, m] or [1, m] (default `examination_weights(m)` when `config.position_weighted`),
    reference_log_probs [B, K, m] or None, scale: the running scale (needed when `config.rank_share` < 1)."""
    slots = log_probs.shape[-1]
    advantages = ldro_advantages(
        rewards.detach(),
        None if slot_rewards is None else slot_rewards.detach(),
        config=config,
        scale=scale,
    ).expand_as(log_probs)  # [B, K, m]
    if not config.position_weighted:
        weights = log_probs.new_ones(1, slots)
    elif position_weights is None:
        weights = examination_weights(slots).to(log_probs.device)
    else:
        weights = position_weights.to(log_probs.device)
    terms = weights.unsqueeze(1) * advantages * log_probs  # [B, K, m]
    anchor, kl = _anchor(log_probs, reference_log_probs, kl_weight)
    loss = -terms.sum(dim=-1).mean() + anchor
    if entropies is not None and config.entropy_weight > 0:
        loss = loss + config.entropy_weight * (config.entropy_floor - entropies).clamp(min=0).mean()
    return PolicyLoss(loss, advantages, kl)
