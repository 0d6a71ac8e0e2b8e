import numpy as np
import pytest
import torch

from recsys.metrics.ranking import auc
from recsys.mmbee.training.loop import EpochShuffle, TrainConfig, latest_checkpoint, train
from recsys.mmbee.training.testing import TinyGTRModel, learnable_dataset, reset_accelerate_state, tiny_mmbee

ROWS, VAL_ROWS, BATCH = 96, 64, 16  # 6 steps per epoch


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    reset_accelerate_state()
    yield
    reset_accelerate_state()


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(ROWS, seed=0), learnable_dataset(VAL_ROWS, seed=1)


@pytest.fixture(scope="module")
def learnable():
    """Enough rows for the tiny model to learn the planted signal (gift AUC about 0.9 after 6 epochs)."""
    return learnable_dataset(256, seed=0), learnable_dataset(128, seed=1)


def config(**kwargs) -> TrainConfig:
    defaults = dict(epochs=2, batch_size=BATCH, eval_batch_size=32, lr=1e-2, progress=False, cpu=True)
    return TrainConfig(**{**defaults, **kwargs})


def run(data, **kwargs):
    torch.manual_seed(0)
    model = TinyGTRModel()
    result = train(model, *data, config(**kwargs))
    return model, result


def assert_same_weights(a, b, atol=1e-6):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], atol=atol, rtol=0, msg=name)


def gift_auc(model, val):
    model.eval()
    with torch.no_grad():
        scores = model(val.batch(np.arange(len(val))))[:, 0]
    return auc(val.labels[:, 0], scores.numpy())


def test_epoch_shuffle_depends_on_seed_and_epoch_only():
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    first = list(a)
    assert sorted(first) == list(range(50))
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(b) == list(a)
    assert list(EpochShuffle(50, seed=4)) != first


def test_same_seed_same_weights_other_seed_other_weights(data):
    first, result = run(data, restore_best=False)
    second, _ = run(data, restore_best=False)
    third, _ = run(data, restore_best=False, seed=1)
    assert result.steps == 2 * ROWS // BATCH and result.samples == 2 * ROWS
    assert_same_weights(first, second, atol=0)
    assert not torch.equal(first.head.weight, third.head.weight)


def test_worker_processes_build_the_same_batches(data):
    """num_workers > 0: ds.batch runs in a worker process (the collate_fn and the dataset are pickled)."""
    inline, _ = run(data, epochs=1, restore_best=False)
    workers, result = run(data, epochs=1, restore_best=False, num_workers=1)
    assert result.steps == ROWS // BATCH
    assert_same_weights(inline, workers, atol=0)


def test_learns_and_ends_with_the_best_evaluated_weights(learnable):
    model, result = run(learnable, epochs=6, eval_every=10, lr=3e-2)
    assert [r.step for r in result.history] == [*range(10, 96, 10), 96]
    assert result.best_auc == max(r.auc for r in result.history) > 0.85
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert gift_auc(model, learnable[1]) == pytest.approx(result.best_auc, abs=1e-9)
    last, last_result = run(learnable, epochs=6, eval_every=10, lr=3e-2, restore_best=False)
    assert gift_auc(last, learnable[1]) == pytest.approx(last_result.history[-1].auc, abs=1e-9)
    assert 0 < result.samples_per_second < float("inf")


def test_resume_after_one_epoch_equals_two_epochs_uninterrupted(data, tmp_path):
    straight, straight_result = run(data, restore_best=False)
    _, first = run(data, epochs=1, restore_best=False, output_dir=str(tmp_path))
    assert first.steps == 6 and first.checkpoint.endswith("step-00000006")
    torch.manual_seed(123)  # a different initialisation: resume must overwrite it
    resumed = TinyGTRModel()
    result = train(resumed, *data, config(restore_best=False, output_dir=str(tmp_path)))
    assert result.resumed_from == first.checkpoint and result.steps == 12 and result.samples == ROWS
    assert_same_weights(straight, resumed)
    assert [r.auc for r in result.history] == pytest.approx(
        [r.auc for r in straight_result.history], abs=1e-9
    )
    assert [r.train_loss for r in result.history] == pytest.approx(
        [r.train_loss for r in straight_result.history], abs=1e-6
    )


VARIANCE_REDUCERS = dict(ema_decay=0.8, lr_schedule="cosine", warmup_ratio=0.2)


@pytest.mark.parametrize("reducers", [{}, VARIANCE_REDUCERS], ids=["plain", "ema+cosine"])
def test_resume_mid_epoch_equals_uninterrupted(data, tmp_path, reducers):
    """Interrupted at step 9 (mid epoch 2, between checkpoints every 4 steps): the newest checkpoint is step 9
    (the stop saves), the loader skips the 3 batches of epoch 2 already seen, dropout replays its RNG. With the
    EMA on, the end weights are the average's, so they match only if the average was checkpointed too; the
    learning rate follows the global step."""
    schedule = dict(epochs=3, eval_every=4, checkpoint_every=4, **reducers)
    straight, straight_result = run(data, **schedule, restore_best=False)
    _, cut = run(data, **schedule, max_steps=9, output_dir=str(tmp_path))
    assert cut.steps == 9 and latest_checkpoint(tmp_path / "checkpoints").name == "step-00000009"
    resumed, result = run(data, **schedule, restore_best=False, output_dir=str(tmp_path))
    assert result.steps == 18 and result.samples == ROWS * 3 - 9 * BATCH
    assert_same_weights(straight, resumed)
    assert [r.step for r in result.history] == [r.step for r in straight_result.history] == [4, 8, 12, 16, 18]
    assert [r.auc for r in result.history] == pytest.approx(
        [r.auc for r in straight_result.history], abs=1e-9
    )
    assert result.best_step == straight_result.best_step


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
def test_the_mmbee_model_resumes_exactly(learnable, tmp_path, backbone):
    """The real model (tiny config, Θ buffers included in the checkpoint): 2 epochs = 1 epoch + resume."""
    straight = tiny_mmbee(backbone)
    straight_result = train(straight, *learnable, config(lr=1e-2, batch_size=32, restore_best=False))
    train(
        tiny_mmbee(backbone), *learnable, config(epochs=1, lr=1e-2, batch_size=32, output_dir=str(tmp_path))
    )
    resumed = tiny_mmbee(backbone, seed=5)
    result = train(
        resumed, *learnable, config(lr=1e-2, batch_size=32, restore_best=False, output_dir=str(tmp_path))
    )
    assert result.resumed_from is not None
    assert_same_weights(straight, resumed)
    assert straight_result.history[1].train_loss < straight_result.history[0].train_loss


def test_checkpoints_are_pruned_and_an_unfinished_one_is_ignored(data, tmp_path):
    run(data, epochs=3, output_dir=str(tmp_path), keep_checkpoints=2)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000012", "step-00000018"]
    (checkpoints / "step-00000024.tmp").mkdir()  # a save that crashed half way
    (checkpoints / "step-00000030").mkdir()  # a directory without its trainer state
    assert latest_checkpoint(checkpoints).name == "step-00000018"
    _, result = run(data, epochs=3, output_dir=str(tmp_path))
    assert result.resumed_from.endswith("step-00000018") and result.samples == 0


def test_patience_stops_when_auc_stops_improving(data):
    _, result = run(data, epochs=5, lr=1e-9, patience=2)  # the AUC cannot move
    assert result.stopped_early
    assert len(result.history) == 3 and result.steps == 3 * ROWS // BATCH
    assert result.best_step == ROWS // BATCH


def test_bf16_mixed_precision_trains_on_cpu(learnable):
    model, result = run(learnable, mixed_precision="bf16", epochs=4, lr=3e-2)
    assert all(np.isfinite(r.val_loss) for r in result.history)
    assert result.best_auc > 0.8
    assert model.head.weight.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(epochs=0),
        dict(batch_size=0),
        dict(mixed_precision="fp16"),
        dict(max_steps=0),
        dict(lr=0.0),
        dict(ema_decay=1.0),
        dict(ema_decay=0.0),
        dict(lr_schedule="step"),
        dict(warmup_ratio=1.0),
    ],
)
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        config(**kwargs)


def test_the_learning_rate_warms_up_then_decays_to_zero():
    cosine = TrainConfig(lr=1.0, lr_schedule="cosine", warmup_ratio=0.1)
    rates = [cosine.lr_at(step, 100) for step in range(100)]
    assert rates[:10] == pytest.approx([(step + 1) / 10 for step in range(10)])
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.5)  # half way through the decay
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False)) and rates[-1] < 1e-3
    linear = TrainConfig(lr=1.0, lr_schedule="linear")
    assert [linear.lr_at(step, 4) for step in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert {TrainConfig(lr=0.3).lr_at(step, 7) for step in range(7)} == {0.3}


def test_the_optimizer_steps_with_the_scheduled_rate(data):
    """AdamW's first update is lr x sign(gradient) per weight: with half of 12 steps as warm-up, step 1 runs at
    lr / 6, so it moves every weight a sixth as far as a constant-rate step."""
    torch.manual_seed(0)
    start = TinyGTRModel().state_dict()
    moves = {}
    for name, reducers in (("constant", {}), ("warmup", dict(warmup_ratio=0.5))):
        model, result = run(data, max_steps=1, restore_best=False, **reducers)
        assert result.steps == 1
        moves[name] = torch.cat([(model.state_dict()[k] - start[k]).flatten() for k in start])
    moved = moves["constant"].abs() > 1e-3  # weights that got a gradient (unseen id rows did not)
    assert moved.sum() > 50
    torch.testing.assert_close(moves["warmup"][moved], moves["constant"][moved] / 6, rtol=1e-3, atol=1e-7)


def test_ema_weights_are_what_is_evaluated_and_kept(data):
    """The end weights are the moving average of the raw weights after each step (e_1 = w_1,
    e_k = d e_(k-1) + (1 - d) w_k), recomputed here from the raw trajectory; evaluation scores them."""
    decay, steps = 0.7, ROWS // BATCH
    raw_after = []  # raw weights after steps 1..5: read before each later training forward

    def record(module, args):
        if module.training and len(raw_after) < steps:
            raw_after.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    torch.manual_seed(0)
    model = TinyGTRModel()
    model.register_forward_pre_hook(record)
    result = train(model, *data, config(epochs=1, ema_decay=decay, restore_best=False))
    plain, _ = run(data, epochs=1, restore_best=False)  # the same raw trajectory: its end is w_6
    trajectory = [*raw_after[1:], plain.state_dict()]  # w_1 .. w_6
    assert len(trajectory) == steps
    expected = dict(trajectory[0])
    for weights in trajectory[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=0, msg=name)
    assert not torch.allclose(model.head.weight, plain.head.weight, atol=1e-4)
    assert gift_auc(model, data[1]) == pytest.approx(result.history[-1].auc, abs=1e-9)


def test_with_ema_the_best_evaluation_is_the_average_restored(learnable):
    model, result = run(learnable, epochs=8, eval_every=5, lr=0.1, ema_decay=0.8)
    assert result.best_step != result.steps  # a mid-run evaluation won, so restoring it means something
    assert gift_auc(model, learnable[1]) == pytest.approx(result.best_auc, abs=1e-9)


def test_an_ema_run_does_not_resume_from_a_checkpoint_without_the_average(data, tmp_path):
    run(data, epochs=1, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no EMA state"):
        run(data, ema_decay=0.9, output_dir=str(tmp_path))
