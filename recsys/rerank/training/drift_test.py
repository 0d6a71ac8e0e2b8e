from dataclasses import replace

import numpy as np
import pytest
import torch

from recsys.rerank.models.config import TINY
from recsys.rerank.models.student import NARStudent
from recsys.rerank.simulator.stream import DriftingStream
from recsys.rerank.training.drift import (
    DRIFT_CONFIGS,
    DriftSettings,
    beyond_spread,
    compare_under_drift,
    drift_points,
    plot_drift,
    run_metrics,
)
from recsys.rerank.training.online import OnlineConfig, OnlineHistory


def _history(greedy: list[float], phase_length: int) -> OnlineHistory:
    steps = list(range(len(greedy)))
    return OnlineHistory(
        step=steps,
        phase=[t // phase_length for t in steps],
        greedy_pct=list(greedy),
        sample_pct=list(greedy),
        reward=[g / 100 for g in greedy],
        loss=[0.0] * len(greedy),
        kl=[0.0] * len(greedy),
    )


SETTINGS = DriftSettings(window=2, tolerance=1.0, plateau_share=0.25)


def test_known_drop_and_recovery():
    # phase 0 flat at 90; at the drift it falls to 70 and climbs 5 points a step back to 90
    greedy = [90.0] * 8 + [70.0, 75.0, 80.0, 85.0, 90.0, 90.0, 90.0, 90.0]
    (point,) = drift_points(_history(greedy, 8), SETTINGS)
    assert point.step == 8 and point.pre == 90.0 and point.plateau == 90.0
    assert point.drop == pytest.approx(20.0)
    # rolling means of 2 since the drift: 70, 72.5, 77.5, 82.5, 87.5, 90 -> first >= 89 at s = 5
    assert point.recovery_steps == 5 and point.recovered


def test_a_lower_new_plateau_counts_as_recovered_but_sinking_does_not_recover_at_once():
    lower = [90.0] * 8 + [60.0, 80.0, 80.0, 80.0, 80.0, 80.0, 80.0, 80.0]
    (point,) = drift_points(_history(lower, 8), SETTINGS)
    assert point.plateau == 80.0 and point.recovery_steps == 2  # rolling: 60, 70, 80
    sinking = [90.0] * 8 + [80.0, 78.0, 76.0, 74.0, 72.0, 70.0, 68.0, 40.0]
    (point,) = drift_points(_history(sinking, 8), SETTINGS)
    assert point.plateau == 54.0 and point.recovery_steps == 7  # only its last (lowest) step counts


def test_steadiness_metrics_separate_a_noisy_run_from_a_steady_one():
    rng = np.random.default_rng(0)
    base = np.array([90.0] * 20 + [70.0] + [90.0] * 19)
    steady = run_metrics(_history(list(base), 20), SETTINGS)
    noisy = run_metrics(_history(list(base + rng.normal(0, 3, base.size)), 20), SETTINGS)
    assert steady["post_std"] == pytest.approx(0.0, abs=1e-9) and steady["jitter"] > 0  # the one drop
    assert noisy["post_std"] > 1.5 and noisy["jitter"] > steady["jitter"]
    assert steady["recovered_share"] == 1.0 and steady["post_level"] == pytest.approx(90.0)


def test_beyond_spread_needs_the_gap_to_exceed_both_stds():
    grpo = {m: (10.0, 1.0) for m in ("drop", "recovery_steps", "post_std", "jitter", "reward_std")}
    grpo |= {m: (80.0, 1.0) for m in ("mean_pct", "post_level", "recovered_share")}
    ldro = dict(grpo, recovery_steps=(7.0, 1.0), post_std=(8.5, 1.0), mean_pct=(83.0, 0.5))
    verdict = beyond_spread(ldro, grpo)
    assert verdict["recovery_steps"] and verdict["mean_pct"]
    assert not verdict["post_std"] and not verdict["drop"]


def test_compare_under_drift_runs_both_methods_on_the_same_stream_and_plots(tmp_path):
    def make_student(seed: int) -> NARStudent:
        torch.manual_seed(seed)
        return NARStudent(TINY)

    config = OnlineConfig(samples_per_request=4, lr=1e-2)
    report = compare_under_drift(
        make_student,
        seeds=(0, 1),
        steps=6,
        config=config,
        make_stream=lambda seed: DriftingStream(seed=seed, batch_size=4, phase_length=3),
        settings=SETTINGS,
        progress=False,
    )
    assert report["drift_points"] == [3]
    for method in ("ldro", "grpo"):
        assert report["curves"][method]["greedy_pct"].shape == (2, 6)
        assert len(report["per_seed"][method]) == 2
        assert set(report["summary"][method]) == set(report["beyond_spread"])
    # same initial student and stream: the first step's greedy pages are the same for both methods
    np.testing.assert_array_equal(
        report["curves"]["ldro"]["greedy_pct"][:, 0], report["curves"]["grpo"]["greedy_pct"][:, 0]
    )
    assert report["configs"]["grpo"]["method"] == "grpo" and report["configs"]["ldro"]["steps"] == 6
    path = plot_drift(report, tmp_path / "drift.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_method_configs_are_used():
    configs = {
        "ldro": OnlineConfig(samples_per_request=3, lr=1e-2),
        "grpo": replace(OnlineConfig(samples_per_request=3), lr=5e-3),
    }
    report = compare_under_drift(
        lambda seed: NARStudent(TINY),
        seeds=(0,),
        steps=2,
        configs=configs,
        make_stream=lambda seed: DriftingStream(seed=seed, batch_size=2, phase_length=1),
        progress=False,
    )
    assert report["configs"]["ldro"]["lr"] == 1e-2 and report["configs"]["grpo"]["lr"] == 5e-3


def test_by_default_ldro_is_anchored_to_its_start_and_grpo_is_textbook():
    report = compare_under_drift(
        lambda seed: NARStudent(TINY),
        seeds=(0,),
        steps=2,
        make_stream=lambda seed: DriftingStream(seed=seed, batch_size=2, phase_length=1),
        progress=False,
    )
    assert report["configs"]["ldro"]["kl_weight"] == DRIFT_CONFIGS["ldro"].kl_weight > 0
    assert report["configs"]["grpo"]["kl_weight"] == 0.0
    assert report["configs"]["ldro"]["lr"] == report["configs"]["grpo"]["lr"]
