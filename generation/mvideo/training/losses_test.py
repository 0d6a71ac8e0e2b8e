import pytest
import torch

from generation.mvideo.training.losses import (
    consistency_loss,
    diffusion_loss,
    object_weights,
    resolve_teacher,
    sample_condition_dropout,
    sample_timesteps,
)


def test_condition_dropout_rates_are_independent():
    g = torch.Generator().manual_seed(0)
    drop_text, drop_mask = sample_condition_dropout(40_000, 0.1, 0.3, g)
    assert drop_text.dtype == torch.bool and drop_text.shape == (40_000,)
    assert abs(drop_text.float().mean().item() - 0.1) < 0.01
    assert abs(drop_mask.float().mean().item() - 0.3) < 0.01
    assert abs((drop_text & drop_mask).float().mean().item() - 0.03) < 0.005  # independent: p_t * p_m
    none_t, none_m = sample_condition_dropout(100, 0.0, 0.0, g)
    all_t, all_m = sample_condition_dropout(100, 1.0, 1.0, g)
    assert not none_t.any() and not none_m.any() and all_t.all() and all_m.all()
    with pytest.raises(ValueError, match="p_mask"):
        sample_condition_dropout(4, 0.1, 1.5)


def test_consistency_loss_definition():
    pred = torch.randn(4, 2, 3, 4, 4)
    assert consistency_loss(pred, pred.clone()).item() == 0.0  # model equals its teacher
    teacher = pred.clone()
    teacher[1] += 2.0  # only sample 1 differs from the teacher, by 2 everywhere
    dropped = torch.tensor([False, True, False, False])
    assert consistency_loss(pred, teacher, dropped).item() == pytest.approx(4.0)
    assert consistency_loss(pred, teacher, ~dropped).item() == 0.0  # differences outside D do not count
    assert consistency_loss(pred, teacher, torch.zeros(4, dtype=torch.bool)).item() == 0.0
    both = torch.tensor([True, True, False, False])
    assert consistency_loss(pred, teacher, both).item() == pytest.approx(2.0)  # mean over D
    # The teacher gets no gradient; the student does.
    student = pred.clone().requires_grad_(True)
    frozen = teacher.clone().requires_grad_(True)
    consistency_loss(student, frozen, both).backward()
    assert frozen.grad is None and student.grad is not None
    assert diffusion_loss(pred, pred).item() == 0.0


def test_teacher_resolution():
    assert resolve_teacher("auto", 0.5, has_base=True) == "base"
    assert resolve_teacher("auto", 0.5, has_base=False) == "none"  # from scratch: lambda = 0
    assert resolve_teacher("ema", 0.5, has_base=False) == "ema"
    assert resolve_teacher("base", 0.0, has_base=True) == "none"
    with pytest.raises(ValueError, match="pretrained"):
        resolve_teacher("base", 0.5, has_base=False)
    with pytest.raises(ValueError, match="one of"):
        resolve_teacher("teacher", 0.5, has_base=True)


def test_object_weights_cover_the_dilated_masks_of_kept_samples_only():
    masks = torch.zeros(2, 4, 3, 8, 8)
    masks[:, :, 1, 3, 3] = 1.0  # one pixel of slot 1 in every frame
    keep = torch.tensor([True, False])
    weights = object_weights(masks, keep, (2, 2, 3, 8, 8), weight=4.0, dilation=1)
    assert weights.shape == (2, 2, 1, 8, 8)
    assert weights[0, 0, 0, 2:5, 2:5].eq(5.0).all() and weights[0, 0, 0].sum() == 64 + 4 * 9
    assert weights[1].eq(1.0).all()  # mask dropped: the model cannot see it, so no weighting
    assert object_weights(masks, keep, (2, 2, 3, 8, 8), weight=0.0) is None
    pred, target = torch.zeros(2, 2, 3, 8, 8), torch.ones(2, 2, 3, 8, 8)
    assert diffusion_loss(pred, target, weights).item() == pytest.approx(1.0)  # a weighted mean


def test_timestep_bias_favours_high_noise():
    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(20_000, 1000, 1.0, g)
    biased = sample_timesteps(20_000, 1000, 2.0, g)
    assert uniform.min() >= 0 and uniform.max() <= 999 and biased.dtype == torch.int64
    assert abs(uniform.float().mean().item() - 500) < 10
    assert abs(biased.float().mean().item() - 667) < 10  # density 2t/T^2: mean 2T/3
    with pytest.raises(ValueError):
        sample_timesteps(4, 1000, 0.0)


def test_sample_to_velocity_turns_the_true_clean_sample_into_the_true_v():
    from generation.mvideo.training.losses import MIN_SIGMA, sample_to_velocity

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    a = torch.tensor([0.1, 0.5, 0.8]).view(-1, 1, 1)  # sigma above MIN_SIGMA: the exact v
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert torch.allclose(sample_to_velocity(x0, noisy, a), v, atol=1e-5)
    # the x_0 error is weighted by 1 / sigma^2, floored at MIN_SIGMA
    tiny = torch.tensor([1.0 - 1e-6]).view(-1, 1, 1)
    err = sample_to_velocity(x0[:1] + 0.01, noisy[:1], tiny) - sample_to_velocity(x0[:1], noisy[:1], tiny)
    assert torch.allclose(err, torch.full_like(err, -0.01 / MIN_SIGMA), atol=1e-4)
