import dataclasses
import json

import numpy as np
import pytest
import torch

from recsys.data.batches import random_batch
from recsys.mmbee.export import (
    FORMAT_VERSION,
    ExportMismatchError,
    ModelFolderError,
    export_scorer,
    load_model_folder,
    load_scorer,
    save_model_folder,
    verify_export,
)
from recsys.mmbee.export.scorer import (
    CANDIDATE_FILE,
    CONFIG_FILE,
    FUSION_FILE,
    METRICS_FILE,
    REQUEST_FILE,
    SCORER_FILE,
    WEIGHTS_FILE,
    single_viewer,
)
from recsys.mmbee.models.mmbee import MMBeeModel
from recsys.mmbee.models.request import with_viewer_of
from recsys.mmbee.training.testing import NUM_AUTHORS, NUM_USERS, tiny_mmbee

VARIANTS = ["sim", "mmoe", "sim-without-h_m"]


def model_of(variant: str) -> MMBeeModel:
    model = tiny_mmbee(variant.removesuffix("-without-h_m"))
    if variant.endswith("-without-h_m"):
        config = dataclasses.replace(model.config, use_mfq=False)
        gie = model.expansion_arch
        model = MMBeeModel(config, gie.theta_users, gie.theta_authors)
    return model.eval()


def batch(rows: int, seed: int = 0, **sizes):
    return random_batch(
        rows,
        num_users=NUM_USERS,
        num_authors=NUM_AUTHORS,
        generator=torch.Generator().manual_seed(seed),
        **sizes,
    )


def eager_scores(model, rows_batch) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(rows_batch)[:, 0]).numpy()


@pytest.fixture(scope="module", params=VARIANTS)
def folder(request, tmp_path_factory):
    model = model_of(request.param)
    directory = tmp_path_factory.mktemp(f"model-{request.param}")
    save_model_folder(directory, model, batch(4), {"auc": 0.71, "uauc": float("nan"), "n": np.int64(3)})
    return model, directory


@pytest.fixture(scope="module")
def loaded(folder):
    """The folder loaded once, for the tests that only read it."""
    return load_model_folder(folder[1])


def test_the_folder_holds_its_documented_files(folder):
    model, directory = folder
    h_m = model.config.h_m_enabled
    files = {WEIGHTS_FILE, SCORER_FILE, REQUEST_FILE, METRICS_FILE} | (
        {FUSION_FILE, CANDIDATE_FILE} if h_m else set()
    )
    assert {p.name for p in directory.iterdir()} == files | {CONFIG_FILE}
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 3 and manifest["config"] == model.config.to_dict()
    assert set(manifest["sha256"]) == files
    assert set(manifest["programs"]) == (
        {"scorer", "fusion", "request", "candidate"} if h_m else {"scorer", "request"}
    )
    request_inputs = manifest["programs"]["request"]["inputs"]  # the viewer once, the candidates per row
    assert request_inputs["history_content"] == {"shape": [1, 6, 8], "dtype": "float32"}
    assert request_inputs["neighbours_u2a2u"]["shape"][0] == 1
    assert request_inputs["author_dense"]["shape"] == [None, 3] and "visual" not in request_inputs
    assert ("candidate_rows" in request_inputs) == h_m and "h_m" not in request_inputs
    if (
        h_m
    ):  # h_m and the candidate's own expansions (a2a, a2u2a: pooled [d] and best logit each), cached together
        assert request_inputs["candidate_rows"]["shape"] == [None, 16 + 2 * (16 + 1)]
        assert "neighbours_a2a" not in request_inputs
        assert list(manifest["programs"]["candidate"]["inputs"]) == [
            "authors", "h_m", "neighbours_a2a", "neighbours_a2u2a"
        ]  # fmt: skip
    scorer_inputs = manifest["programs"]["scorer"]["inputs"]
    if h_m:  # the scorer takes h_m instead of the segment tokens, which only the fusion program reads
        assert (
            scorer_inputs["h_m"] == {"shape": [None, 16], "dtype": "float32"}
            and "visual" not in scorer_inputs
        )
        fusion_inputs = manifest["programs"]["fusion"]["inputs"]
        assert list(fusion_inputs) == ["authors", "visual", "speech", "comments"]
        assert fusion_inputs["visual"] == {"shape": [None, 5, 8], "dtype": "float32"}
    else:
        assert (
            scorer_inputs["visual"] == {"shape": [None, 5, 8], "dtype": "float32"}
            and "h_m" not in scorer_inputs
        )
    assert json.loads((directory / METRICS_FILE).read_text()) == {"auc": 0.71, "n": 3, "uauc": None}


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_loaded_programs_and_model_give_the_eager_scores(folder, loaded, rows):
    model, _ = folder
    config, eager, scorer = loaded
    assert config == model.config and scorer.takes_h_m == config.h_m_enabled
    rows_batch = batch(rows, seed=rows)
    expected = eager_scores(model, rows_batch)
    scores = scorer(rows_batch)
    assert scores.shape == (rows,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(eager_scores(eager, rows_batch), expected, atol=1e-6, rtol=0)
    assert verify_export(model, scorer, [rows_batch]) <= 1e-5
    if scorer.takes_h_m:
        h_m = scorer.h_m(rows_batch)  # [rows, d]
        torch.testing.assert_close(h_m, model.fusion(rows_batch), atol=1e-5, rtol=0)
        np.testing.assert_allclose(scorer(rows_batch, h_m), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_a_request_is_scored_by_the_request_program_with_the_eager_scores(folder, loaded, rows):
    model, _ = folder
    _, _, scorer = loaded
    mixed = batch(rows, seed=rows)
    for request in (with_viewer_of(mixed, rows // 2), with_viewer_of(mixed, 0)._map(torch.clone)):
        assert single_viewer(request)  # a broadcast view, then the same rows copied
        expected = eager_scores(model, request)
        h_m = scorer.h_m(request) if scorer.takes_h_m else None
        np.testing.assert_allclose(scorer.score_request(request, h_m=h_m), expected, atol=1e-5, rtol=0)
        if scorer.takes_h_m:  # the rows a server caches: h_m first
            cached = scorer.cache_rows(request, np.arange(len(request)))
            assert cached.shape[0] == len(request)
            torch.testing.assert_close(cached[:, : scorer.h_m_dim], h_m, atol=0, rtol=0)
            np.testing.assert_allclose(scorer.score_request(request, cached), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(scorer(request), expected, atol=1e-5, rtol=0)
    assert rows == 1 or not single_viewer(mixed)


def test_a_request_is_told_apart_by_every_viewer_input(loaded):
    _, _, scorer = loaded
    request = with_viewer_of(batch(5, seed=4), 1)._map(torch.clone)
    assert single_viewer(request)
    for change in (
        lambda b: b.history_content[3, 0].add_(1.0),
        lambda b: b.user_dense[4].add_(1.0),
        lambda b: b.neighbours["u2a2a"][2].add_(1),
    ):
        changed = request._map(torch.clone)
        change(changed)
        assert not single_viewer(changed)
    calls = []
    program = scorer.scorer._module
    scorer.scorer._module = lambda *inputs: calls.append(len(inputs)) or program(*inputs)
    try:
        scorer(request)  # the request program: the scorer program is not called
        assert calls == []
        scorer(batch(5, seed=4))
        assert len(calls) == 1
    finally:
        scorer.scorer._module = program


def test_a_format_2_folder_scores_every_batch_with_the_scorer_program(folder, tmp_path):
    model, source = folder
    directory = copy_folder(source, tmp_path / "copy")
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    for name, file in (("request", REQUEST_FILE), ("candidate", CANDIDATE_FILE)):
        if name in manifest["programs"]:
            del manifest["programs"][name], manifest["sha256"][file]
            (directory / file).unlink()
    (directory / CONFIG_FILE).write_text(json.dumps({**manifest, "format_version": 2}))
    _, _, scorer = load_model_folder(directory)
    assert scorer.request is None
    request = with_viewer_of(batch(4, seed=5), 2)
    np.testing.assert_allclose(scorer(request), eager_scores(model, request), atol=1e-5, rtol=0)


def test_the_scorer_reads_the_given_h_m_and_not_the_tokens(folder, loaded):
    model, _ = folder
    _, _, scorer = loaded
    if not scorer.takes_h_m:
        with pytest.raises(ValueError, match="has no h_m"):
            scorer.h_m(batch(3))
        return
    rows_batch, other = batch(6, seed=1), batch(6, seed=2)
    other.authors = rows_batch.authors
    h_m_other = scorer.h_m(other)  # the same streamers showing another segment
    torch.testing.assert_close(scorer.h_m(other, np.array([4, 1])), h_m_other[[4, 1]], atol=0, rtol=0)
    rows_batch.visual, rows_batch.speech, rows_batch.comments = other.visual, other.speech, other.comments
    expected = eager_scores(model, rows_batch)  # the viewers of rows_batch watching other's segments
    np.testing.assert_allclose(scorer(batch(6, seed=1), h_m_other), expected, atol=1e-5, rtol=0)
    assert np.abs(scorer(batch(6, seed=1)) - expected).max() > 1e-4  # the segment matters


def test_theta_buffers_travel_with_the_weights(folder, loaded):
    model, _ = folder
    _, eager, _ = loaded
    loaded = eager.expansion_arch.theta_users
    assert loaded.abs().sum() > 0  # not the zero buffer MMBeeModel(config) starts with
    torch.testing.assert_close(loaded, model.expansion_arch.theta_users, atol=0, rtol=0)


def test_batches_above_the_export_limit_are_run_in_chunks(folder):
    model, directory = folder
    _, _, scorer = load_model_folder(directory)
    scorer.max_batch = 64  # as if 64 were the exported maximum: 300 rows in 5 calls of each program
    rows_batch = batch(300, seed=3)
    np.testing.assert_allclose(scorer(rows_batch), eager_scores(model, rows_batch), atol=1e-5, rtol=0)
    request = with_viewer_of(rows_batch, 7)  # the request program: the viewer passed whole to every chunk
    np.testing.assert_allclose(scorer(request), eager_scores(model, request), atol=1e-5, rtol=0)
    if scorer.takes_h_m:
        assert scorer.fusion.max_batch == 64
        torch.testing.assert_close(scorer.h_m(rows_batch), model.fusion(rows_batch), atol=1e-5, rtol=0)


def test_a_batch_of_another_shape_is_refused_by_field(loaded):
    _, _, scorer = loaded
    with pytest.raises(ValueError, match="history_authors has shape"):
        scorer(batch(3, history=9))
    with pytest.raises(ValueError, match="visual has shape"):
        scorer(batch(3, segment_tokens=4))


@pytest.mark.parametrize("variant", ["sim", "sim-without-h_m"])
def test_a_bare_export_loads_with_its_own_input_shapes(tmp_path, variant):
    model = model_of(variant)
    export_scorer(model, batch(1), tmp_path)  # one example row: tiled to two for export
    assert (tmp_path / FUSION_FILE).is_file() == model.config.h_m_enabled
    scorer = load_scorer(tmp_path)
    assert [spec.shape for spec in scorer.specs][:3] == [(None,), (None,), (None, 3)]
    assert scorer.specs[-1].name == ("h_m" if model.config.h_m_enabled else "neighbours_a2u2a")
    for rows in (1, 5):
        np.testing.assert_allclose(
            scorer(batch(rows, seed=9)), eager_scores(model, batch(rows, seed=9)), atol=1e-5
        )


def test_verify_export_names_the_difference(folder):
    _, directory = folder
    _, model, scorer = load_model_folder(directory)
    with torch.no_grad():
        model.sparse_arch.users.weight.add_(1.0)  # the eager model moves on, the export does not
    with pytest.raises(ExportMismatchError, match="scores differ from eager by up to"):
        verify_export(model, scorer, [batch(6)])
    if model.fusion_arch is not None:
        _, model, scorer = load_model_folder(directory)
        with torch.no_grad():
            model.fusion_arch.projections[0].bias.add_(1.0)
        with pytest.raises(ExportMismatchError, match="h_m differ from eager by up to"):
            verify_export(model, scorer, [batch(6)])
    _, model, scorer = load_model_folder(directory)
    _, other, _ = load_model_folder(directory)
    with torch.no_grad():
        other.behaviour_arch.content.bias.add_(
            1.0
        )  # what the request program alone is given: another model's
    scorer.request = export_scorer(other, batch(2), directory.parent / f"{directory.name}-other").request
    with pytest.raises(ExportMismatchError, match="request scores differ from eager by up to"):
        verify_export(model, scorer, [batch(6)])


def copy_folder(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize(
    "name", [CONFIG_FILE, WEIGHTS_FILE, SCORER_FILE, FUSION_FILE, REQUEST_FILE, CANDIDATE_FILE, METRICS_FILE]
)
def test_a_missing_file_is_named(folder, tmp_path, name):
    if not (folder[1] / name).exists():
        pytest.skip(f"this model has no {name}")
    directory = copy_folder(folder[1], tmp_path / "copy")
    (directory / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"incomplete: {name} missing"):
        load_model_folder(directory)


@pytest.mark.parametrize(
    "name", [WEIGHTS_FILE, SCORER_FILE, FUSION_FILE, REQUEST_FILE, CANDIDATE_FILE, METRICS_FILE]
)
def test_a_corrupt_file_is_named(folder, tmp_path, name):
    if not (folder[1] / name).exists():
        pytest.skip(f"this model has no {name}")
    directory = copy_folder(folder[1], tmp_path / "copy")
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the file still parses
    (directory / name).write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=f"{name} does not match its digest"):
        load_model_folder(directory)


def test_a_damaged_config_an_old_or_a_future_format_is_refused(folder, tmp_path):
    directory = copy_folder(folder[1], tmp_path / "copy")
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    for version in (1, 4):
        (directory / CONFIG_FILE).write_text(json.dumps({**manifest, "format_version": version}))
        with pytest.raises(
            ModelFolderError, match=f"format {version}; this code reads formats 2 and 3 .re-export"
        ):
            load_model_folder(directory)
    (directory / CONFIG_FILE).write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(ModelFolderError, match="do not fit the config .* and format 2"):
        load_model_folder(directory)  # format 2 has no request program
    (directory / CONFIG_FILE).write_text(
        json.dumps({**manifest, "config": {**manifest["config"], "hidden": 3}})
    )
    with pytest.raises(ModelFolderError, match="config.json is damaged"):
        load_model_folder(directory)
    flipped = {**manifest["config"], "use_mfq": not manifest["config"]["use_mfq"]}
    (directory / CONFIG_FILE).write_text(json.dumps({**manifest, "config": flipped}))
    with pytest.raises(ModelFolderError, match="config.json is damaged.*do not fit the config"):
        load_model_folder(directory)
    (directory / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json is damaged"):
        load_model_folder(directory)


def test_a_truncated_program_file_gives_a_clear_error(folder, tmp_path):
    (tmp_path / SCORER_FILE).write_bytes((folder[1] / SCORER_FILE).read_bytes()[:1000])
    with pytest.raises(ModelFolderError, match="not a readable exported program"):
        load_scorer(tmp_path)
    with pytest.raises(FileNotFoundError, match="no exported program"):
        load_scorer(tmp_path / "absent")
