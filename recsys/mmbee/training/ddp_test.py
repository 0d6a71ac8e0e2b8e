"""Two-process CPU DDP (gloo) through the same `train` call: the processes end with identical weights, together
they see every training row once per epoch, and the run equals one process with the doubled batch. The run has
the weight EMA and a warm-up + cosine schedule on, so those are checked under DDP too (the end weights are the
EMA's)."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from recsys.mmbee.training.loop import TrainConfig, latest_checkpoint, train
from recsys.mmbee.training.testing import TinyGTRModel, ddp_worker, learnable_dataset, reset_accelerate_state

ROWS, VAL_ROWS, BATCH, EPOCHS = 128, 40, 16, 2  # 128 = 4 global batches of 2 x 16 rows per epoch


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    config = TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH,
        eval_batch_size=16,  # 40 validation rows: the last batch is padded and gather_for_metrics drops the pad
        lr=1e-2,
        cpu=True,
        progress=False,
        restore_best=False,
        output_dir=str(out / "run"),
        ema_decay=0.9,
        lr_schedule="cosine",
        warmup_ratio=0.25,
    )
    mp.start_processes(
        ddp_worker,
        args=(2, str(out / "rendezvous"), str(out), config, ROWS, VAL_ROWS, 0.0),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    return config, [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def test_both_processes_end_with_the_same_weights(two_processes):
    config, ranks = two_processes
    assert [r["num_processes"] for r in ranks] == [2, 2]
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][name], value, atol=0, rtol=0, msg=name)
    assert ranks[0]["result"].history == ranks[1]["result"].history
    saved = latest_checkpoint(
        f"{config.output_dir}/checkpoints"
    )  # every process's RNG states in one checkpoint
    assert saved.name == "step-00000008" and {p.name for p in saved.glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }


def test_together_they_see_every_training_row_once_per_epoch(two_processes):
    _, ranks = two_processes
    steps = ROWS // (2 * BATCH)
    for rank in ranks:
        assert len(rank["requested"]) == EPOCHS * steps and rank["result"].steps == EPOCHS * steps
        assert rank["result"].samples == EPOCHS * ROWS
    for epoch in range(EPOCHS):
        seen = np.concatenate([c for r in ranks for c in r["requested"][epoch * steps : (epoch + 1) * steps]])
        assert np.array_equal(np.sort(seen), np.arange(ROWS))


def test_two_processes_equal_one_process_with_the_doubled_batch(two_processes):
    """Process p takes chunks p, p + 2, ... of the same permutation and DDP averages the two mean gradients, so
    (dropout off) two processes of 16 rows train like one of 32 rows, and validate on the same 40 rows."""
    config, ranks = two_processes
    reset_accelerate_state()
    torch.manual_seed(0)
    model = TinyGTRModel(dropout=0.0)
    single_config = TrainConfig(**{**vars(config), "batch_size": 2 * BATCH, "output_dir": None})
    result = train(model, learnable_dataset(ROWS, seed=0), learnable_dataset(VAL_ROWS, seed=1), single_config)
    reset_accelerate_state()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert [r.auc for r in result.history] == pytest.approx(
        [r.auc for r in ranks[0]["result"].history], abs=1e-6
    )
