"""How online RL copes with drift: per-run metrics from an `OnlineHistory`, LDRO against GRPO over seeds, a plot.

The series is g_t = the greedy page's TRUE expected utility as % of the step's brute-force optimum (noise-free
given the batch, and comparable across phases). Phases are the runs of equal `history.phase`; a drift point d is
the first step of every phase after the first. With w = `DriftSettings.window`:

- rolling mean since the drift   R_t = mean(g[max(d, t - w + 1) .. t])        (only the new phase's steps)
- pre-drift level                pre = mean(g[d - w .. d - 1])                (the end of the previous phase)
- plateau                        P   = mean of g over the last `plateau_share` of the phase
- drop                           pre - min_t R_t over the phase
- recovery time                  the first s at or after the trough (argmin of R) with
                                 R_{d+s} >= min(pre, P) - tolerance: back within `tolerance` points of the
                                 pre-drift level, or at the phase's own plateau when that is lower (a new taste
                                 may have a lower reachable level; from the trough on, so a policy that keeps
                                 sinking does not count as recovered at once); the phase length (censored,
                                 `recovered` False) when it never gets there
- post-recovery level and std    mean and std of g from the recovery to the end of the phase (the first phase:
                                 from the first step with R >= P - tolerance), averaged over phases
- jitter                         std of the step-to-step changes g_t - g_{t-1} within phases

Lower std and jitter mean a steadier policy; reward noise is the same for both methods (same stream, same
generator seeds), so differences are the updates'. Per run, drift-point metrics are averaged over the drift
points; `compare_under_drift` reports mean and std over seeds and whether LDRO is better than GRPO *beyond the
spread* (our criterion: the means differ in LDRO's favour by more than the sum of the two standard deviations).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from recsys.rerank.simulator.stream import DriftingStream
from recsys.rerank.training.online import METHODS, OnlineConfig, OnlineHistory, RequestStream, run_online

logger = logging.getLogger(__name__)

LDRO_ANCHOR_WEIGHT = 0.05
"""beta of LDRO's KL anchor to the student it starts from, in the drift comparison: chosen among 0.02 / 0.05 / 0.1
on stream seeds 10-12, not the reported 0-2 (`benchmarks/rerank_online.py`; why an anchor: `policy_gradient`)."""
DRIFT_CONFIGS = {
    "ldro": OnlineConfig(method="ldro", kl_weight=LDRO_ANCHOR_WEIGHT),
    "grpo": OnlineConfig(method="grpo"),
}
"""The drift comparison's defaults: LDRO with its anchor, GRPO as the textbook baseline (no anchor, TRL's
beta = 0); the same K, lr, clipping, optimizer and steps."""

LOWER_IS_BETTER = ("drop", "recovery_steps", "post_std", "jitter", "reward_std")
HIGHER_IS_BETTER = ("mean_pct", "post_level", "recovered_share")


@dataclass(frozen=True)
class DriftSettings:
    window: int = 10
    """w: steps in the rolling mean and in the pre-drift level."""
    tolerance: float = 1.0
    """Percentage points below the target that count as recovered."""
    plateau_share: float = 0.3
    """The last share of a phase whose mean is its plateau."""


@dataclass
class DriftPoint:
    step: int
    pre: float
    plateau: float
    drop: float
    recovery_steps: int
    recovered: bool


def _phases(phase: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of equal phase ids."""
    starts = [0] + [t for t in range(1, len(phase)) if phase[t] != phase[t - 1]]
    return list(zip(starts, starts[1:] + [len(phase)], strict=True))


def _rolling_since(g: np.ndarray, start: int, end: int, window: int) -> np.ndarray:
    """R_t for t in [start, end): the mean of g over the last `window` steps, never before `start`."""
    return np.array([g[max(start, t - window + 1) : t + 1].mean() for t in range(start, end)])


def _first_at_least(values: np.ndarray, target: float) -> int | None:
    hits = np.nonzero(values >= target)[0]
    return int(hits[0]) if hits.size else None


def drift_points(history: OnlineHistory, settings: DriftSettings = DriftSettings()) -> list[DriftPoint]:
    """The drop and recovery of every drift point of one run (module docstring)."""
    g = np.asarray(history.greedy_pct, dtype=float)
    spans = _phases(np.asarray(history.phase))
    points = []
    for (previous_start, drift), (_, end) in zip(spans, spans[1:], strict=False):
        pre = float(g[max(previous_start, drift - settings.window) : drift].mean())
        plateau = float(g[end - max(1, int(round(settings.plateau_share * (end - drift)))) : end].mean())
        rolling = _rolling_since(g, drift, end, settings.window)
        trough = int(rolling.argmin())
        recovery = _first_at_least(rolling[trough:], min(pre, plateau) - settings.tolerance)
        recovery = None if recovery is None else trough + recovery
        points.append(
            DriftPoint(
                step=drift,
                pre=pre,
                plateau=plateau,
                drop=pre - float(rolling.min()),
                recovery_steps=end - drift if recovery is None else recovery,
                recovered=recovery is not None,
            )
        )
    return points


def run_metrics(history: OnlineHistory, settings: DriftSettings = DriftSettings()) -> dict[str, float]:
    """One run's drift metrics: the drift points' means, and the steadiness after recovery (module docstring)."""
    g = np.asarray(history.greedy_pct, dtype=float)
    reward = np.asarray(history.reward, dtype=float)
    spans = _phases(np.asarray(history.phase))
    points = drift_points(history, settings)
    recovery_at = {p.step: p.step + p.recovery_steps for p in points if p.recovered}
    levels, stds, reward_stds, changes = [], [], [], []
    for start, end in spans:
        changes.append(np.diff(g[start:end]))
        if start in recovery_at:
            settled = recovery_at[start]
        elif start == 0:  # the first phase: from where it reaches its own plateau
            plateau = g[end - max(1, int(round(settings.plateau_share * (end - start)))) : end].mean()
            rolling = _rolling_since(g, start, end, settings.window)
            settled = start + (_first_at_least(rolling, plateau - settings.tolerance) or 0)
        else:
            continue  # never recovered: no steady part to measure
        if end - settled >= 2:
            levels.append(g[settled:end].mean())
            stds.append(g[settled:end].std())
            reward_stds.append(reward[settled:end].std())
    jitter = np.concatenate(changes) if changes else np.zeros(0)

    def mean(values) -> float:
        return float(np.mean(values)) if len(values) else float("nan")

    return {
        "mean_pct": float(g.mean()),
        "drop": mean([p.drop for p in points]),
        "recovery_steps": mean([p.recovery_steps for p in points]),
        "recovered_share": mean([p.recovered for p in points]),
        "post_level": mean(levels),
        "post_std": mean(stds),
        "jitter": float(jitter.std()) if jitter.size else float("nan"),
        "reward_std": mean(reward_stds),
    }


def compare_under_drift(
    make_student: Callable[[int], nn.Module],
    seeds: tuple[int, ...] = (0, 1, 2),
    steps: int = 300,
    *,
    config: OnlineConfig | None = None,
    configs: dict[str, OnlineConfig] | None = None,
    make_stream: Callable[[int], RequestStream] | None = None,
    settings: DriftSettings = DriftSettings(),
    progress: bool = True,
) -> dict:
    """LDRO and GRPO on the same stream and generator seeds, per seed; the report (data only, nothing printed).

    make_student(seed): the initial student (called once per method and seed, so both start equal);
    config: settings shared by both methods (`method`, `steps` and `seed` are set here); configs: per-method
    settings instead; neither: `DRIFT_CONFIGS`; make_stream(seed): default `DriftingStream(seed, 32,
    phase_length=steps // 3)`.

    Report: "methods", "seeds", "steps", "drift_points" (steps), "phase" [T], "curves"[method][series] float
    [S, T] for greedy_pct / sample_pct / reward, "per_seed"[method] = [run_metrics], "summary"[method][metric] =
    (mean, std) over seeds, "beyond_spread"[metric] = whether LDRO beats GRPO beyond the spread, "configs"."""
    make_stream = make_stream or (
        lambda seed: DriftingStream(seed=seed, batch_size=32, phase_length=steps // 3)
    )
    runs: dict[str, list[OnlineHistory]] = {method: [] for method in METHODS}
    used = {}
    for seed in seeds:
        stream = make_stream(seed)
        for method in METHODS:
            base = configs[method] if configs is not None else (config or DRIFT_CONFIGS[method])
            used[method] = replace(base, method=method, steps=steps, seed=seed)
            logger.info("online %s, seed %d, %d steps", method, seed, steps)
            runs[method].append(run_online(make_student(seed), stream, used[method], progress=progress))
    first = runs[METHODS[0]][0]
    phase = np.asarray(first.phase)
    report = {
        "methods": METHODS,
        "seeds": tuple(seeds),
        "steps": steps,
        "phase": phase.tolist(),
        "drift_points": [start for start, _ in _phases(phase)[1:]],
        "curves": {
            method: {
                series: np.asarray([getattr(h, series) for h in histories], dtype=float)
                for series in ("greedy_pct", "sample_pct", "reward")
            }
            for method, histories in runs.items()
        },
        "per_seed": {
            method: [run_metrics(h, settings) for h in histories] for method, histories in runs.items()
        },
        "settings": asdict(settings),
        "configs": {method: asdict(c) for method, c in used.items()},
    }
    report["summary"] = {
        method: {
            metric: (float(np.mean(values)), float(np.std(values)))
            for metric, values in _columns(report["per_seed"][method]).items()
        }
        for method in METHODS
    }
    report["beyond_spread"] = beyond_spread(report["summary"]["ldro"], report["summary"]["grpo"])
    return report


def _columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    return {key: [row[key] for row in rows] for key in rows[0]}


def beyond_spread(
    ldro: dict[str, tuple[float, float]], grpo: dict[str, tuple[float, float]]
) -> dict[str, bool]:
    """Per metric: LDRO's mean is better than GRPO's by more than the sum of their stds over seeds."""
    verdict = {}
    for metric in LOWER_IS_BETTER + HIGHER_IS_BETTER:
        (a, sa), (b, sb) = ldro[metric], grpo[metric]
        gain = (b - a) if metric in LOWER_IS_BETTER else (a - b)
        verdict[metric] = bool(gain > sa + sb)
    return verdict


def plot_drift(report: dict, path: str | Path) -> Path:
    """A PNG of the greedy % of optimum (top) and the sampled reward (bottom) per step: the mean over seeds, the
    min-max over seeds shaded, drift points as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    panels = (("greedy_pct", "greedy page, % of optimum"), ("reward", "sampled reward (mean of K)"))
    for axis, (series, label) in zip(axes, panels, strict=True):
        for method in report["methods"]:
            curves = report["curves"][method][series]  # [S, T]
            steps = np.arange(curves.shape[1])
            axis.plot(steps, curves.mean(axis=0), label=method.upper(), linewidth=1.2)
            axis.fill_between(steps, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
        for drift in report["drift_points"]:
            axis.axvline(drift, color="grey", linestyle="--", linewidth=0.8)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    axes[1].set_xlabel(f"step (drift points dashed; {len(report['seeds'])} seeds, shaded: min-max)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
