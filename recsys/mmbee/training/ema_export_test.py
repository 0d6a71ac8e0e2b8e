"""With the weight EMA on, what is exported (and so what the ranking service scores) is the moving average, not
the last step's raw weights: `train` ends with the EMA in the model and the model folder is written from it."""

import dataclasses

import numpy as np
import pytest
import torch

from recsys.data.batches import random_batch
from recsys.mmbee.export import load_model_folder, save_model_folder
from recsys.mmbee.models.mmbee import MMBeeModel
from recsys.mmbee.training.loop import TrainConfig, train
from recsys.mmbee.training.testing import (
    NUM_AUTHORS,
    NUM_USERS,
    learnable_dataset,
    reset_accelerate_state,
    tiny_mmbee,
)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    reset_accelerate_state()
    yield
    reset_accelerate_state()


def trained(ema_decay):
    model = tiny_mmbee("sim")
    # Without h_m: two exported programs instead of four, to keep the test short.
    config = dataclasses.replace(model.config, use_mfq=False)
    model = MMBeeModel(config, model.expansion_arch.theta_users, model.expansion_arch.theta_authors)
    config = TrainConfig(
        epochs=1, batch_size=16, lr=1e-2, cpu=True, progress=False, restore_best=False, ema_decay=ema_decay
    )
    train(model, learnable_dataset(64, seed=0), learnable_dataset(32, seed=1), config)
    return model.eval()


def test_the_exported_scorer_is_the_ema(tmp_path):
    averaged, raw = trained(0.5), trained(None)  # the same raw trajectory; only the end weights differ
    save_model_folder(tmp_path, averaged, random_batch(4, num_users=NUM_USERS, num_authors=NUM_AUTHORS))
    _, loaded, scorer = load_model_folder(tmp_path)
    rows = random_batch(
        16, num_users=NUM_USERS, num_authors=NUM_AUTHORS, generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        ema_scores = torch.sigmoid(averaged(rows)[:, 0]).numpy()
        raw_scores = torch.sigmoid(raw(rows)[:, 0]).numpy()
    exported = np.asarray(scorer(rows))
    np.testing.assert_allclose(exported, ema_scores, atol=1e-5, rtol=0)
    assert np.abs(exported - raw_scores).max() > 1e-3
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, atol=0, rtol=0, msg=name)
