import json

import numpy as np
import pytest
import torch

from recsys.data.batches import random_batch
from recsys.mmbee.export import (
    ExportMismatchError,
    ModelFolderError,
    export_scorer,
    load_model_folder,
    load_scorer,
    save_model_folder,
    verify_export,
)
from recsys.mmbee.export.scorer import CONFIG_FILE, METRICS_FILE, SCORER_FILE, WEIGHTS_FILE
from recsys.mmbee.training.testing import NUM_AUTHORS, NUM_USERS, tiny_mmbee


def batch(rows: int, seed: int = 0):
    return random_batch(
        rows, num_users=NUM_USERS, num_authors=NUM_AUTHORS, generator=torch.Generator().manual_seed(seed)
    )


def eager_scores(model, rows_batch) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(rows_batch)[:, 0]).numpy()


@pytest.fixture(scope="module", params=["sim", "mmoe"])
def folder(request, tmp_path_factory):
    model = tiny_mmbee(request.param).eval()
    directory = tmp_path_factory.mktemp(f"model-{request.param}")
    save_model_folder(directory, model, batch(4), {"auc": 0.71, "uauc": float("nan"), "n": np.int64(3)})
    return model, directory


@pytest.fixture(scope="module")
def loaded(folder):
    """The folder loaded once, for the tests that only read it."""
    return load_model_folder(folder[1])


def test_the_folder_holds_its_documented_files(folder):
    model, directory = folder
    assert {p.name for p in directory.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, SCORER_FILE, METRICS_FILE}
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    assert manifest["format_version"] == 1 and manifest["config"] == model.config.to_dict()
    assert manifest["inputs"]["visual"] == {"shape": [None, 5, 8], "dtype": "float32"}
    assert json.loads((directory / METRICS_FILE).read_text()) == {"auc": 0.71, "n": 3, "uauc": None}


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_loaded_scorer_and_model_give_the_eager_scores(folder, loaded, rows):
    model, _ = folder
    config, eager, scorer = loaded
    assert config == model.config
    rows_batch = batch(rows, seed=rows)
    expected = eager_scores(model, rows_batch)
    scores = scorer(rows_batch)
    assert scores.shape == (rows,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(eager_scores(eager, rows_batch), expected, atol=1e-6, rtol=0)
    assert verify_export(model, scorer, [rows_batch]) <= 1e-5


def test_theta_buffers_travel_with_the_weights(folder, loaded):
    model, _ = folder
    _, eager, _ = loaded
    loaded = eager.expansion_arch.theta_users
    assert loaded.abs().sum() > 0  # not the zero buffer MMBeeModel(config) starts with
    torch.testing.assert_close(loaded, model.expansion_arch.theta_users, atol=0, rtol=0)


def test_batches_above_the_export_limit_are_scored_in_chunks(folder):
    model, directory = folder
    _, _, scorer = load_model_folder(directory)
    scorer.max_batch = 64  # as if 64 were the exported maximum: 300 rows in 5 calls
    rows_batch = batch(300, seed=3)
    np.testing.assert_allclose(scorer(rows_batch), eager_scores(model, rows_batch), atol=1e-5, rtol=0)


def test_a_batch_of_another_shape_is_refused_by_field(loaded):
    _, _, scorer = loaded
    other = random_batch(3, num_users=NUM_USERS, num_authors=NUM_AUTHORS, history=9)
    with pytest.raises(ValueError, match="history_authors has shape"):
        scorer(other)


def test_a_bare_scorer_file_loads_with_its_own_input_shapes(tmp_path):
    model = tiny_mmbee().eval()
    export_scorer(model, batch(1), tmp_path / "scorer.pt2")  # one example row: tiled to two for export
    scorer = load_scorer(tmp_path / "scorer.pt2")
    assert [spec.shape for spec in scorer.specs][:3] == [(None,), (None,), (None, 3)]
    for rows in (1, 5):
        np.testing.assert_allclose(
            scorer(batch(rows, seed=9)), eager_scores(model, batch(rows, seed=9)), atol=1e-5
        )


def test_verify_export_names_the_difference(folder):
    _, directory = folder
    _, model, scorer = load_model_folder(directory)
    with torch.no_grad():
        model.sparse_arch.users.weight.add_(1.0)  # the eager model moves on, the export does not
    with pytest.raises(ExportMismatchError, match="differ from eager by up to"):
        verify_export(model, scorer, [batch(6)])


def copy_folder(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE, SCORER_FILE, METRICS_FILE])
def test_a_missing_file_is_named(folder, tmp_path, name):
    directory = copy_folder(folder[1], tmp_path / "copy")
    (directory / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"incomplete: {name} missing"):
        load_model_folder(directory)


@pytest.mark.parametrize("name", [WEIGHTS_FILE, SCORER_FILE, METRICS_FILE])
def test_a_corrupt_file_is_named(folder, tmp_path, name):
    directory = copy_folder(folder[1], tmp_path / "copy")
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the file still parses
    (directory / name).write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=f"{name} does not match its digest"):
        load_model_folder(directory)


def test_a_damaged_config_or_a_future_format_is_refused(folder, tmp_path):
    directory = copy_folder(folder[1], tmp_path / "copy")
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(ModelFolderError, match="format 2; this code reads format 1"):
        load_model_folder(directory)
    (directory / CONFIG_FILE).write_text(
        json.dumps({**manifest, "config": {**manifest["config"], "hidden": 3}})
    )
    with pytest.raises(ModelFolderError, match="config.json is damaged"):
        load_model_folder(directory)
    (directory / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json is damaged"):
        load_model_folder(directory)


def test_a_truncated_scorer_file_gives_a_clear_error(folder, tmp_path):
    path = tmp_path / "scorer.pt2"
    path.write_bytes((folder[1] / SCORER_FILE).read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match="not a readable exported program"):
        load_scorer(path)
    with pytest.raises(FileNotFoundError, match="no scorer"):
        load_scorer(tmp_path / "absent.pt2")
