import fnmatch
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

from libs.modelstore.catalog import Catalog, ModelSpec, Use, discover_catalog
from libs.modelstore.errors import HubUnreachableError, LayoutError, SourceError
from libs.modelstore.layout import list_files
from libs.modelstore.manifest import MANIFEST_NAME, read_manifest
from libs.modelstore.store import PlanError, inspect, plan_pull, pull, staged_names, verify
from libs.modelstore.testing import (
    DIFFUSERS_STAGED,
    TRANSFORMERS_STAGED,
    write_diffusers_folder,
    write_transformers_folder,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def online(monkeypatch):
    """The hub allowed (the repository's conftest sets HF_HUB_OFFLINE=1 for every test)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


@pytest.fixture
def catalog(tmp_path):
    embedded = write_diffusers_folder(tmp_path / "embedded" / "default")
    return Catalog(
        [
            ModelSpec(
                "detector",
                "org/detector-tiny",
                "transformers",
                "a detector",
                uses=(Use("kmono serve masks", "--model-detector", "KMONO_MASKS_DETECTOR"),),
                requires=("preprocessor_config.json",),
            ),
            ModelSpec("pipe", embedded, "diffusers", "an embedded pipeline"),
            ModelSpec("big-pipe", "org/big-pipe", "diffusers", "a hub pipeline"),
        ]
    )


def _staged_files(folder: Path) -> list[str]:
    return [f for f in list_files(folder) if f != MANIFEST_NAME]


def _no_leftovers(models: Path) -> None:
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] in ([], [".kmono-models.lock"])


# ----- pull from a local directory -----


def test_pull_a_transformers_directory_writes_the_files_and_a_manifest(tmp_path, catalog):
    source = write_transformers_folder(tmp_path / "src" / "detector-tiny")
    models = tmp_path / "models"
    request = plan_pull(str(source), catalog)
    assert (request.name, request.layout, request.spec.name) == ("detector", "transformers", "detector")
    result = pull(request, models)
    assert result.staged and result.path == models / "detector"
    assert _staged_files(result.path) == TRANSFORMERS_STAGED
    manifest = json.loads((result.path / MANIFEST_NAME).read_text())
    assert manifest["source"] == str(source.resolve()) and manifest["source_type"] == "local"
    assert manifest["revision"] is None and manifest["commit"] is None
    assert manifest["layout"] == "transformers" and manifest["requires"] == ["preprocessor_config.json"]
    assert sorted(manifest["files"]) == TRANSFORMERS_STAGED
    for rel, entry in manifest["files"].items():
        data = (source / rel).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["total_size"] == sum(e["size"] for e in manifest["files"].values())
    _no_leftovers(models)
    assert staged_names(models) == ["detector"]


def test_pull_a_diffusers_directory_under_a_new_name(tmp_path, catalog):
    source = write_diffusers_folder(tmp_path / "my-pipeline")
    request = plan_pull(str(source), catalog)
    assert (request.name, request.layout, request.spec) == ("my-pipeline", None, None)
    result = pull(request, tmp_path / "models")
    assert result.manifest.layout == "diffusers"  # told by model_index.json
    assert _staged_files(result.path) == DIFFUSERS_STAGED
    assert verify(tmp_path / "models")[0].ok


def test_pull_the_embedded_default_by_name(tmp_path, catalog):
    result = pull(plan_pull("pipe", catalog), tmp_path / "models")
    assert result.manifest.source == str(catalog["pipe"].source)
    assert _staged_files(result.path) == DIFFUSERS_STAGED


def test_pull_the_installed_shapes_default_offline(tmp_path, monkeypatch):
    """The MVideo catalogue entry's default is the embedded shapes-world pipeline: no network, a real folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = discover_catalog()
    result = pull(plan_pull("mvideo", catalog), tmp_path / "models", progress=False)
    manifest = read_manifest(result.path)
    assert manifest.layout == "diffusers" and manifest.source_type == "local"
    assert manifest.source == str(catalog["mvideo"].source)
    index = json.loads((result.path / "model_index.json").read_text())
    for component, value in index.items():
        if isinstance(value, list) and all(value):
            assert any(f.startswith(f"{component}/") for f in manifest.files), component
    assert ".gitignore" not in manifest.files
    assert [s.state for s in verify(tmp_path / "models", ["mvideo"])] == ["ok"]


def test_a_folder_that_is_not_what_the_engine_loads_is_refused_before_staging(tmp_path, catalog):
    not_a_pipeline = write_transformers_folder(tmp_path / "src")
    models = tmp_path / "models"
    with pytest.raises(LayoutError, match="not a diffusers pipeline folder.*no model_index.json"):
        pull(plan_pull("big-pipe", catalog, source=str(not_a_pipeline)), models)
    assert staged_names(models) == []
    _no_leftovers(models)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no model files"):
        pull(plan_pull(str(tmp_path / "empty"), catalog), models)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("hi")
    with pytest.raises(LayoutError, match="cannot tell what"):
        pull(plan_pull(str(tmp_path / "docs"), catalog), models)


def test_pulling_again_keeps_or_replaces_as_documented(tmp_path, catalog):
    models = tmp_path / "models"
    source = write_transformers_folder(tmp_path / "src" / "detector-tiny")
    assert pull(plan_pull(str(source), catalog), models).staged
    again = pull(plan_pull(str(source), catalog), models)
    assert not again.staged and again.note.startswith("up to date")
    # a bare catalogue name keeps whatever is staged (here: an operator's local copy), without the hub
    kept = pull(plan_pull("detector", catalog), models)
    assert not kept.staged and "not the catalogue's org/detector-tiny" in kept.note
    # a changed source is staged again, and the old folder is replaced whole
    (source / "config.json").write_text(json.dumps({"model_type": "fake", "hidden_size": 16}))
    restaged = pull(plan_pull(str(source), catalog), models)
    assert restaged.staged
    assert (
        restaged.manifest.files["config.json"].sha256
        == hashlib.sha256((source / "config.json").read_bytes()).hexdigest()
    )
    assert pull(plan_pull(str(source), catalog), models, force=True).staged
    _no_leftovers(models)


def test_leftovers_of_an_interrupted_pull_are_removed(tmp_path, catalog):
    models = tmp_path / "models"
    (models / ".kmono-staging-detector-abc123" / "sub").mkdir(parents=True)
    (models / ".kmono-staging-detector-abc123" / "sub" / "half.safetensors").write_bytes(b"half")
    pull(plan_pull("pipe", catalog), models)
    _no_leftovers(models)


# ----- verify -----


def test_verify_catches_a_flipped_byte_a_missing_file_and_no_manifest(tmp_path, catalog):
    models = tmp_path / "models"
    pull(plan_pull("pipe", catalog), models)
    pull(plan_pull(str(write_transformers_folder(tmp_path / "detector-tiny")), catalog), models)
    assert [s.state for s in verify(models)] == ["ok", "ok"]

    weights = models / "pipe" / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0x01
    weights.write_bytes(bytes(data))
    (models / "detector" / "preprocessor_config.json").unlink()
    (models / "hand-made").mkdir()
    statuses = {s.name: s for s in verify(models)}
    assert statuses["pipe"].state == "damaged"
    problems = [str(p) for p in statuses["pipe"].problems]
    assert len(problems) == 1
    assert problems[0].startswith(
        "transformer/diffusion_pytorch_model.safetensors: sha256 mismatch (manifest "
    )
    detector = [str(p) for p in statuses["detector"].problems]
    assert "preprocessor_config.json: missing" in detector
    assert "layout: preprocessor_config.json: missing (the engine reads it)" in detector
    assert statuses["hand-made"].state == "incomplete"
    assert verify(models, ["nope"])[0].state == "not staged"
    # quick (sizes): the flipped byte passes, the missing file does not
    assert inspect(models, "pipe", quick=True).ok
    assert not inspect(models, "detector", quick=True).ok


# ----- plan -----


def test_plan_maps_sources_to_catalogue_entries(tmp_path, catalog):
    hub = plan_pull("org/detector-tiny", catalog)
    assert (hub.name, hub.is_hub, hub.catalogue_default) == ("detector", True, False)
    other = plan_pull("THUDM/CogVideoX-5b", catalog)
    assert (other.name, other.layout, other.spec) == ("cogvideox-5b", None, None)
    named = plan_pull("THUDM/CogVideoX-5b", catalog, name="big-pipe")
    assert named.spec is catalog["big-pipe"] and named.layout == "diffusers"
    assert plan_pull("detector", catalog, revision="v2").revision == "v2"
    with pytest.raises(PlanError, match="--from goes with a catalogue name"):
        plan_pull("org/x", catalog, source="./x")
    with pytest.raises(PlanError, match="not a catalogue name"):
        plan_pull("nope", catalog)
    with pytest.raises(PlanError, match="--name 'Bad Name'"):
        plan_pull("detector", catalog, name="Bad Name")
    with pytest.raises(SourceError, match="no such directory"):
        plan_pull("detector", catalog, source=str(tmp_path / "missing"))


# ----- the hub -----


class FakeHub:
    """snapshot_download over a directory standing in for a hub repository (dry run, then allow_patterns)."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir
        self.calls: list[dict] = []

    def __call__(
        self,
        repo_id,
        *,
        revision=None,
        local_dir=None,
        cache_dir=None,
        dry_run=False,
        allow_patterns=None,
        **_,
    ):
        self.calls.append(
            {"repo_id": repo_id, "revision": revision, "dry_run": dry_run, "allow": allow_patterns}
        )
        assert str(cache_dir).startswith(str(local_dir)), "never the user's Hugging Face cache"
        files = list_files(self.repo_dir)
        if dry_run:
            return [
                SimpleNamespace(commit_hash=COMMIT, filename=f, file_size=(self.repo_dir / f).stat().st_size)
                for f in files
            ]
        assert revision == COMMIT, "the download is pinned to the listed commit"
        for rel in files:
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(local_dir) / rel).write_bytes((self.repo_dir / rel).read_bytes())
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / ".cache" / "huggingface" / "meta").write_text("x")
        return str(local_dir)


def test_pull_from_the_hub_stages_the_listed_commit(tmp_path, catalog, monkeypatch, online):
    fake = FakeHub(write_transformers_folder(tmp_path / "remote"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    models = tmp_path / "models"
    result = pull(plan_pull("detector", catalog), models)
    assert _staged_files(result.path) == TRANSFORMERS_STAGED  # no .bin, .onnx or .cache
    manifest = read_manifest(result.path)
    assert (manifest.source, manifest.source_type, manifest.revision, manifest.commit) == (
        "org/detector-tiny",
        "hub",
        "main",
        COMMIT,
    )
    assert [c["dry_run"] for c in fake.calls] == [True, False]
    assert sorted(fake.calls[1]["allow"]) == TRANSFORMERS_STAGED
    # staged: a bare name does not go to the hub again; another revision does
    assert not pull(plan_pull("detector", catalog), models).staged and len(fake.calls) == 2
    assert pull(plan_pull("detector", catalog, revision="v2"), models).staged and len(fake.calls) == 4
    _no_leftovers(models)


def test_a_hub_repository_that_is_not_the_layout_is_refused_before_downloading(
    tmp_path, catalog, monkeypatch, online
):
    fake = FakeHub(write_transformers_folder(tmp_path / "remote"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(LayoutError, match="hub repository org/big-pipe is not a diffusers pipeline folder"):
        pull(plan_pull("big-pipe", catalog), tmp_path / "models")
    assert [c["dry_run"] for c in fake.calls] == [True]


@pytest.mark.parametrize(
    "error",
    [
        hf_errors.OfflineModeIsEnabled("offline mode is enabled"),
        httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"),
        hf_errors.LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder"),
    ],
    ids=["offline", "connect", "no-cache"],
)
def test_an_unreachable_hub_is_one_line_that_says_how_to_stage_offline(
    tmp_path, catalog, monkeypatch, online, error
):
    def unreachable(*args, **kwargs):
        try:
            raise error
        except Exception as cause:  # as huggingface_hub does: the dry run's error wraps the connection error
            raise hf_errors.DryRunError("Dry run cannot be performed") from cause

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(HubUnreachableError) as exc:
        pull(plan_pull("detector", catalog), tmp_path / "models")
    message = str(exc.value)
    assert message.startswith("cannot reach the Hugging Face hub") and "\n" not in message
    assert "kmono models pull detector --from ./detector-tiny --dir" in message
    assert staged_names(tmp_path / "models") == []


def test_hf_hub_offline_refuses_without_calling_the_hub(tmp_path, catalog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("called the hub"))
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE=1 is set; to stage it without the hub"):
        pull(plan_pull("org/other-model", catalog), tmp_path / "models")
    # offline, a local directory and the embedded default still stage
    assert pull(plan_pull("pipe", catalog), tmp_path / "models").staged


def test_a_repository_that_does_not_exist_is_not_called_unreachable(tmp_path, catalog, monkeypatch, online):
    response = SimpleNamespace(
        status_code=404, headers={}, request=None, url="https://huggingface.co/api/models/x"
    )

    def missing(*args, **kwargs):
        try:
            raise hf_errors.RepositoryNotFoundError("404 Client Error", response=response)
        except Exception as cause:
            raise hf_errors.DryRunError("Dry run cannot be performed") from cause

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(SourceError, match="no model org/typo on the hub"):
        pull(plan_pull("org/typo", catalog), tmp_path / "models")


def test_a_staged_folder_is_readable_by_others(tmp_path, catalog):
    result = pull(plan_pull("pipe", catalog), tmp_path / "models")
    assert os.stat(result.path).st_mode & 0o055 == 0o055


def test_staged_real_models_load_with_from_pretrained(tmp_path):
    """What `select_files` keeps is enough for transformers and diffusers to load (tiny random models)."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
        )
    )
    bert.save_pretrained(tmp_path / "src" / "bert")
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8,),
        down_block_types=("DownBlock2D",),
        up_block_types=("UpBlock2D",),
        layers_per_block=1,
        norm_num_groups=4,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(
        tmp_path / "src" / "ddpm"
    )

    catalog = Catalog([])
    models = tmp_path / "models"
    bert_dir = pull(plan_pull(str(tmp_path / "src" / "bert"), catalog), models).path
    ddpm_dir = pull(plan_pull(str(tmp_path / "src" / "ddpm"), catalog), models).path
    assert read_manifest(bert_dir).layout == "transformers" and read_manifest(ddpm_dir).layout == "diffusers"
    loaded = BertModel.from_pretrained(bert_dir)
    assert torch.equal(loaded.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    pipe = DDPMPipeline.from_pretrained(ddpm_dir)
    assert torch.equal(next(pipe.unet.parameters()), next(unet.parameters()))
