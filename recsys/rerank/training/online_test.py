import math
from dataclasses import replace

import pytest
import torch

from recsys.data.pages import CATEGORIES, options_vector
from recsys.rerank.models.config import TINY
from recsys.rerank.models.decoding import UNAVAILABLE
from recsys.rerank.models.student import NARStudent
from recsys.rerank.simulator.world import generate_requests, with_taste
from recsys.rerank.training.online import (
    OnlineConfig,
    latest_checkpoint,
    observe,
    run_online,
    slot_entropy,
)


class _TinyStream:
    """A few requests per step, deterministic in (seed, step); the taste flips every `phase_length` steps."""

    def __init__(self, seed: int = 0, batch_size: int = 4, phase_length: int = 3) -> None:
        self.seed, self.batch_size, self.phase_length = seed, batch_size, phase_length

    def phase(self, step: int) -> int:
        return step // self.phase_length

    def batch(self, step: int):
        requests = generate_requests(self.batch_size, seed=self.seed * 100_003 + step)
        taste = torch.ones(len(CATEGORIES))
        taste[self.phase(step) % len(CATEGORIES)] = 3.0
        return with_taste(requests, taste)


def _student(seed: int = 0) -> NARStudent:
    torch.manual_seed(seed)
    return NARStudent(TINY)


def _config(**overrides) -> OnlineConfig:
    base = OnlineConfig(
        method="ldro", steps=6, samples_per_request=4, lr=1e-2, kl_weight=0.05, checkpoint_every=2
    )
    return replace(base, **overrides)


def test_observed_slot_rewards_sum_to_the_page_reward_of_the_same_draw():
    requests = generate_requests(4, seed=1)
    requests.batch.options[:] = options_vector(diversity_weight=0.3)  # the page-level term is shared too
    orders = torch.stack(
        [torch.randperm(8, generator=torch.Generator().manual_seed(i))[:4] for i in range(12)]
    )
    orders = orders.view(4, 3, 4)
    rewards, slot_rewards = observe(requests.user, requests.batch, orders, torch.Generator().manual_seed(5))
    assert slot_rewards.shape == (4, 3, 4)
    assert torch.allclose(slot_rewards.sum(-1), rewards)
    same_draw = requests.user.sample_reward(orders, torch.Generator().manual_seed(5))
    assert torch.allclose(rewards, same_draw)


def test_slot_entropy_is_log_of_the_available_count_when_uniform_and_zero_when_certain():
    available = torch.tensor([0.0, 0.0, 0.0, UNAVAILABLE])  # three candidates left, one placed before
    uniform = torch.log_softmax(available, -1).masked_fill(available < 0, UNAVAILABLE)
    certain = torch.tensor([0.0, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE])
    entropy = slot_entropy(torch.stack([uniform, certain]).view(1, 1, 2, 4))
    assert torch.allclose(entropy, torch.tensor([[[math.log(3), 0.0]]]))


@pytest.mark.parametrize("method", ["ldro", "grpo"])
def test_history_is_recorded_and_the_student_changes(method):
    student = _student()
    before = [p.detach().clone() for p in student.parameters()]
    history = run_online(student, _TinyStream(), _config(method=method, steps=3), progress=False)
    assert history.step == [0, 1, 2] and history.phase == [0, 0, 0]
    for pct in history.greedy_pct + history.sample_pct:
        assert 0 < pct <= 100 + 1e-4  # the optimum bounds every page
    assert all(math.isfinite(v) for v in history.loss + history.reward)
    assert len(history.entropy) == 3 and all(0 < h < math.log(8) for h in history.entropy)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))


def test_without_a_reference_the_anchor_is_the_student_as_passed():
    history = run_online(_student(), _TinyStream(), _config(steps=2), progress=False)
    assert history.kl[0] == 0.0  # the policy is its own reference before the first update
    assert history.kl[1] > 0.0


def test_same_seed_same_run_and_methods_share_the_first_samples():
    runs = {
        method: run_online(_student(), _TinyStream(), _config(method=method, steps=2), progress=False)
        for method in ("ldro", "grpo")
    }
    again = run_online(_student(), _TinyStream(), _config(method="ldro", steps=2), progress=False)
    assert again.greedy_pct == runs["ldro"].greedy_pct and again.loss == runs["ldro"].loss
    # step 0: same initial student, same generators -> the same pages and rewards for both methods
    assert runs["grpo"].sample_pct[0] == runs["ldro"].sample_pct[0]
    assert runs["grpo"].reward[0] == runs["ldro"].reward[0]


@pytest.mark.parametrize("method", ["ldro", "grpo"])
def test_resume_equals_an_uninterrupted_run(tmp_path, method):
    config = _config(method=method, ldro=replace(_config().ldro, rank_share=0.5))
    straight_student = _student()
    straight = run_online(straight_student, _TinyStream(), config, progress=False)

    resumed_student = _student()
    first = run_online(
        resumed_student, _TinyStream(), config, checkpoint_dir=tmp_path, stop_after=3, progress=False
    )
    assert len(first) == 3 and latest_checkpoint(tmp_path).name == "step-00000003"
    resumed_student = (
        _student()
    )  # a fresh process: the initial student again, the checkpoint restores the rest
    rest = run_online(resumed_student, _TinyStream(), config, checkpoint_dir=tmp_path, progress=False)

    assert rest.step == list(range(6))
    for name in ("greedy_pct", "sample_pct", "reward", "loss", "kl", "entropy"):
        assert getattr(rest, name) == getattr(straight, name), name
    for a, b in zip(straight_student.parameters(), resumed_student.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(list(tmp_path.iterdir())) == config.keep_checkpoints


def test_config_is_validated():
    with pytest.raises(ValueError, match="method"):
        OnlineConfig(method="ppo")
    with pytest.raises(ValueError, match="samples_per_request"):
        OnlineConfig(samples_per_request=0)
