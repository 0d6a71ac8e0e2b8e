import pytest
import torch
import torch.nn.functional as F

from recsys.data.batches import TASKS, random_batch
from recsys.mmbee.training.testing import TinyGTRModel
from recsys.mmbee.training.wrapper import DEFAULT_TASK_WEIGHTS, GTRTrainWrapper, gtr_loss


def test_loss_is_gift_bce_plus_weighted_auxiliary_bce():
    torch.manual_seed(0)
    batch = random_batch(16)
    wrapper = GTRTrainWrapper(TinyGTRModel(dropout=0.0), (1.0, 0.3, 0.5))
    loss, logits = wrapper(batch)
    expected = sum(
        w * F.binary_cross_entropy_with_logits(logits[:, t], batch.labels[:, t])
        for t, w in enumerate((1.0, 0.3, 0.5))
    )
    assert logits.shape == (16, len(TASKS))
    assert not logits.requires_grad and loss.requires_grad
    torch.testing.assert_close(loss, expected)


def test_zero_auxiliary_weights_leave_the_gift_loss_alone():
    """A SIM backbone learns the gift only: its loss (and gradient scale) is the gift BCE, not a renormalised mix."""
    torch.manual_seed(0)
    logits, labels = torch.randn(32, len(TASKS)), (torch.rand(32, len(TASKS)) < 0.3).float()
    gift_only = gtr_loss(logits, labels, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(gift_only, F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0]))
    assert DEFAULT_TASK_WEIGHTS == (1.0, 0.2, 0.2)


def test_without_pos_weight_the_optimal_constant_score_is_the_gift_rate():
    """Why no pos_weight by default: the loss's minimiser over a constant logit is the base rate (calibrated);
    pos_weight w moves it to w*r / (w*r + 1 - r)."""
    rate = 0.02
    labels = torch.zeros(1000, len(TASKS))
    labels[: int(rate * 1000), 0] = 1.0
    grid = torch.linspace(-8, 0, 1601)  # candidate constant logits

    def best_probability(pos_weight):
        losses = torch.stack(
            [
                gtr_loss(torch.full_like(labels, z.item()), labels, torch.tensor([1.0, 0, 0]), pos_weight)
                for z in grid
            ]
        )
        return torch.sigmoid(grid[losses.argmin()]).item()

    assert best_probability(None) == pytest.approx(rate, abs=1e-3)
    assert best_probability(10.0) == pytest.approx(10 * rate / (10 * rate + 1 - rate), abs=2e-3)


@pytest.mark.parametrize("weights", [(1.0, 0.2), (0.0, 1.0, 1.0), (1.0, -0.1, 0.2)])
def test_bad_task_weights_are_refused(weights):
    with pytest.raises(ValueError, match="task_weights"):
        GTRTrainWrapper(TinyGTRModel(), weights)


def test_bf16_logits_give_a_float32_loss():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, len(TASKS)), (torch.rand(8, len(TASKS)) < 0.5).float()
    loss = gtr_loss(logits.bfloat16(), labels, torch.tensor(DEFAULT_TASK_WEIGHTS))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss, gtr_loss(logits.bfloat16().float(), labels, torch.tensor(DEFAULT_TASK_WEIGHTS))
    )
