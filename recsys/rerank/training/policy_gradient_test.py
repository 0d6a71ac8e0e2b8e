import pytest
import torch

from recsys.data.pages import LAYOUTS
from recsys.rerank.training.policy_gradient import (
    LDROConfig,
    RunningScale,
    centered_ranks,
    examination_weights,
    grpo_advantages,
    grpo_loss,
    k3_kl,
    ldro_advantages,
    ldro_loss,
)


def _rewards(seed: int = 0, batch: int = 4, pages: int = 5, slots: int = 3):
    g = torch.Generator().manual_seed(seed)
    slot_rewards = torch.rand(batch, pages, slots, generator=g)
    return slot_rewards.sum(-1), slot_rewards


def test_centered_ranks_known_answer_with_ties():
    ranks = centered_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]]))
    # ranks 2.5, 0, 2.5, 1 around 1.5, over 1.5
    assert torch.allclose(ranks, torch.tensor([[2 / 3, -1.0, 2 / 3, -1 / 3]]))
    assert torch.equal(centered_ranks(torch.ones(2, 1)), torch.zeros(2, 1))
    assert torch.equal(centered_ranks(torch.full((1, 4), 7.0)), torch.zeros(1, 4))


def test_grpo_advantages_equal_the_formula():
    rewards, _ = _rewards()
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(grpo_advantages(rewards), expected)
    assert torch.equal(grpo_advantages(torch.full((2, 3), 0.5)), torch.zeros(2, 3))


def test_grpo_blows_up_a_near_tied_group_that_ldro_keeps_small():
    near_tie = torch.tensor([[1.0, 1.0 + 1e-3, 1.0 - 1e-3, 1.0]])
    assert grpo_advantages(near_tie).abs().max() > 1.0  # full-size update from noise
    scale = 0.5  # the stream's usual within-group spread
    config = LDROConfig(rank_share=0.0)
    assert ldro_advantages(near_tie, config=config, scale=scale).abs().max() < 0.01


@pytest.mark.parametrize(
    "config",
    [LDROConfig(), LDROConfig(rank_share=0.5, slot_credit=0.3), LDROConfig(rank_share=0.0, slot_credit=1.0)],
)
def test_ldro_advantages_sum_to_zero_per_request_and_slot_and_are_bounded(config):
    rewards, slot_rewards = _rewards(seed=1)
    advantages = ldro_advantages(rewards, slot_rewards, config=config, scale=0.05)  # small scale: clipping
    assert advantages.shape == slot_rewards.shape
    assert torch.allclose(advantages.sum(dim=1), torch.zeros(4, 3), atol=1e-5)
    assert advantages.abs().max() <= 1.0 + 1e-6
    assert advantages.abs().max() > 0.5  # not trivially zero


def test_ldro_advantages_are_invariant_to_positive_affine_transforms():
    rewards, slot_rewards = _rewards(seed=2)
    slots = slot_rewards.shape[-1]
    config = LDROConfig(rank_share=1.0, slot_credit=0.5)
    before = ldro_advantages(rewards, slot_rewards, config=config)
    after = ldro_advantages(37.0 * rewards - 5.0, 37.0 * slot_rewards - 5.0 / slots, config=config)
    assert torch.allclose(before, after)
    # GRPO's are invariant too, but a monotone non-affine transform changes them and not LDRO's ranks
    assert not torch.allclose(grpo_advantages(rewards), grpo_advantages(rewards**3), atol=1e-3)
    assert torch.allclose(ldro_advantages(rewards, config=config), ldro_advantages(rewards**3, config=config))


def test_slot_credit_separates_the_slots_of_one_page():
    # page 0 is the best list but its last slot is the worst at that slot
    slot_rewards = torch.tensor([[[3.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]])
    rewards = slot_rewards.sum(-1)
    coupled = ldro_advantages(rewards, slot_rewards, config=LDROConfig(slot_credit=0.0))
    decoupled = ldro_advantages(rewards, slot_rewards, config=LDROConfig(slot_credit=0.5))
    assert torch.equal(coupled[0, 0], coupled[0, 0, :1].expand(3))  # every slot gets the list's credit
    assert decoupled[0, 0, 2] < coupled[0, 0, 2]  # the bad slot of a good list gets less credit ...
    assert decoupled[0, 0, 0] == coupled[0, 0, 0]  # ... than its best slots
    assert decoupled[0, 2, 2] > coupled[0, 2, 2]  # the good slot of a bad list gets more


def test_rank_share_below_one_needs_a_scale():
    rewards, _ = _rewards()
    with pytest.raises(ValueError, match="running scale"):
        ldro_advantages(rewards, config=LDROConfig(rank_share=0.5))
    with pytest.raises(ValueError, match="slot_credit"):
        LDROConfig(slot_credit=1.5)


def test_examination_weights_have_mean_one_and_decrease_by_row():
    column = examination_weights(4)
    assert column.shape == (1, 4)
    assert torch.allclose(column.mean(), torch.tensor(1.0))
    assert (column[0, 1:] < column[0, :-1]).all()
    layouts = torch.tensor([LAYOUTS.index("grid"), LAYOUTS.index("column")])
    both = examination_weights(4, layouts)
    assert both[0, 0] == both[0, 1] and both[0, 2] == both[0, 3] and both[0, 1] > both[0, 2]  # rows of two
    assert torch.allclose(both[1], column[0])


def test_running_scale_follows_the_spread_slowly_and_round_trips():
    scale = RunningScale(decay=0.5)
    small = torch.tensor([[0.0, 1.0]])  # std 0.707
    first = scale.update(small)
    assert first == pytest.approx(0.7071, abs=1e-4)
    second = scale.update(10 * small)  # a jump in scale moves it half way
    assert second == pytest.approx(0.5 * 0.7071 + 0.5 * 7.071, abs=1e-3)
    copy = RunningScale()
    copy.load_state_dict(scale.state_dict())
    assert copy.update(small) == scale.update(small)


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    log_probs = torch.log(torch.tensor([[[0.5, 0.25]]]))
    assert torch.equal(k3_kl(log_probs, log_probs), torch.zeros(1, 1))
    assert (k3_kl(log_probs, log_probs - 0.3) > 0).all()


def _toy_step(loss_fn, seed: int = 0):
    """A per-slot categorical policy over n items (uniform start); K distinct pages; one SGD step."""
    n, slots, pages = 6, 3, 4
    logits = torch.zeros(1, slots, n, requires_grad=True)
    orders = torch.stack([torch.arange(slots) + j for j in range(pages)]).unsqueeze(0)  # [1, K, m]
    slot_rewards = torch.tensor([[[0.1, 0.2, 0.0], [0.9, 0.8, 0.7], [0.3, 0.1, 0.2], [0.0, 0.0, 0.4]]])

    def page_log_probs():
        per_slot = torch.log_softmax(logits, -1).expand(pages, -1, -1).unsqueeze(0)  # [1, K, m, n]
        return per_slot.gather(-1, orders.unsqueeze(-1)).squeeze(-1)  # [1, K, m]

    before = page_log_probs().sum(-1).detach()
    out = loss_fn(page_log_probs(), slot_rewards.sum(-1), slot_rewards)
    out.loss.backward()
    with torch.no_grad():
        logits -= 0.5 * logits.grad
    return before, page_log_probs().sum(-1).detach()


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda lp, r, s: grpo_loss(lp, r),
        lambda lp, r, s: ldro_loss(lp, r),
        lambda lp, r, s: ldro_loss(lp, r, slot_rewards=s),
        lambda lp, r, s: ldro_loss(lp, r, slot_rewards=s, config=LDROConfig(rank_share=0.0), scale=0.5),
    ],
    ids=["grpo", "ldro-list", "ldro-slots", "ldro-scale"],
)
def test_one_step_raises_the_best_page_and_lowers_the_worst(loss_fn):
    before, after = _toy_step(loss_fn)
    assert after[0, 1] > before[0, 1]  # page 1 has the best reward
    assert after[0, 0] < before[0, 0]  # page 0 has the worst reward


def test_kl_anchor_pulls_back_towards_the_reference():
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    reference = torch.log_softmax(torch.zeros(1, 3), -1)
    orders = torch.tensor([[0, 1, 2]])  # [B=1, K=3]: one slot each
    log_probs = torch.log_softmax(logits, -1).gather(-1, orders).unsqueeze(-1)  # [1, 3, 1]
    rewards = torch.zeros(1, 3)  # no reward signal: only the anchor acts
    out = ldro_loss(
        log_probs,
        rewards,
        reference_log_probs=reference.gather(-1, orders).unsqueeze(-1),
        kl_weight=1.0,
    )
    assert out.kl > 0
    out.loss.backward()
    assert logits.grad[0, 0] > 0  # descending lowers the over-confident logit


def test_grpo_and_ldro_losses_have_the_same_scale_without_decoupling():
    rewards, _ = _rewards(seed=3)
    log_probs = torch.randn(4, 5, 3)
    config = LDROConfig(slot_credit=0.0, position_weighted=False)
    ldro = ldro_loss(log_probs, rewards, config=config)
    expected = -(centered_ranks(rewards) * log_probs.sum(-1)).mean()
    assert torch.allclose(ldro.loss, expected)
    grpo = grpo_loss(log_probs, rewards)
    assert torch.allclose(grpo.loss, -(grpo_advantages(rewards) * log_probs.sum(-1)).mean())


def test_entropy_floor_pushes_up_only_the_slots_below_it():
    rewards, _ = _rewards(seed=4)
    log_probs = torch.randn(4, 5, 3)
    entropies = torch.full((4, 5, 3), 0.8).index_fill(2, torch.tensor([0]), 0.1).requires_grad_(True)
    config = LDROConfig(entropy_floor=0.5, entropy_weight=2.0)
    out = ldro_loss(log_probs, rewards, config=config, entropies=entropies)
    without = ldro_loss(log_probs, rewards, config=config)
    # slot 0 is 0.4 nats below the floor everywhere: a third of the slots, weighted by eta
    assert torch.allclose(out.loss - without.loss, torch.tensor(2.0 * 0.4 / 3))
    out.loss.backward()
    assert (entropies.grad[..., 0] < 0).all()  # descending raises the entropy of the collapsed slot
    assert (entropies.grad[..., 1:] == 0).all()  # above the floor: no push
    with pytest.raises(ValueError, match="entropy_floor"):
        LDROConfig(entropy_floor=-0.1)
