import json
import shutil

import pytest

from libs.modelstore.errors import LayoutError
from libs.modelstore.layout import check_layout, detect_layout, list_files, select_files
from libs.modelstore.testing import (
    DIFFUSERS_STAGED,
    TRANSFORMERS_STAGED,
    write_diffusers_folder,
    write_transformers_folder,
)


def test_select_files_keeps_what_the_engine_loads():
    assert select_files(
        [
            ".gitattributes",
            ".cache/huggingface/download/model.safetensors.metadata",
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",  # a pickle beside the safetensors
            "sam2.1_hiera_tiny.pt",  # SAM2's original checkpoint, same folder
            "tf_model.h5",
            "flax_model.msgpack",
            "onnx/model.onnx",
            "kmono-manifest.json",  # a staged folder's own manifest: written again, never copied
            "text_encoder/model.safetensors",
            "text_encoder/model.fp16.safetensors",  # a variant beside the plain weights
            "unet/diffusion_pytorch_model.bin",  # only a pickle here: kept
            "vae/diffusion_pytorch_model.fp16.safetensors",  # only a variant here: kept
        ]
    ) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]


def test_fake_folders_are_selected_and_accepted(tmp_path):
    transformers_dir = write_transformers_folder(tmp_path / "t")
    diffusers_dir = write_diffusers_folder(tmp_path / "d")
    assert select_files(list_files(transformers_dir)) == TRANSFORMERS_STAGED
    assert select_files(list_files(diffusers_dir)) == DIFFUSERS_STAGED
    check_layout(transformers_dir, "transformers", requires=("preprocessor_config.json",))
    check_layout(diffusers_dir, "diffusers")
    assert detect_layout(TRANSFORMERS_STAGED) == "transformers"
    assert detect_layout(DIFFUSERS_STAGED) == "diffusers"
    assert detect_layout(["README.md"]) is None


def test_a_transformers_folder_is_not_a_diffusers_pipeline(tmp_path):
    folder = write_transformers_folder(tmp_path / "t")
    with pytest.raises(LayoutError) as exc:
        check_layout(folder, "diffusers")
    message = str(exc.value)
    assert "not a diffusers pipeline folder" in message
    assert "no model_index.json" in message and "looks like a transformers model folder" in message


def test_a_pipeline_without_a_component_folder_is_rejected(tmp_path):
    folder = write_diffusers_folder(tmp_path / "d")
    shutil.rmtree(folder / "vae")
    with pytest.raises(LayoutError) as exc:
        check_layout(folder, "diffusers")
    assert exc.value.problems == ["vae/: missing (model_index.json names diffusers.AutoencoderKL)"]


def test_a_model_without_weights_or_with_a_missing_shard_is_rejected(tmp_path):
    folder = write_diffusers_folder(tmp_path / "d")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "transformer" / "diffusion_pytorch_model.fp16.safetensors").unlink()
    (folder / "vae" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(LayoutError) as exc:
        check_layout(folder, "diffusers")
    problems = exc.value.problems
    assert any(p.startswith("transformer/: no weights") for p in problems), problems
    assert any("names shards that are missing: diffusion_pytorch_model-00002-of-00002" in p for p in problems)


def test_transformers_folder_needs_config_weights_and_required_files(tmp_path):
    folder = write_transformers_folder(tmp_path / "t")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").unlink()
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(LayoutError) as exc:
        check_layout(folder, "transformers", requires=("preprocessor_config.json",))
    assert any("no weights" in p for p in exc.value.problems)
    assert "preprocessor_config.json: missing (the engine reads it)" in exc.value.problems
    (folder / "config.json").write_text("{not json")
    with pytest.raises(LayoutError, match="config.json: not readable JSON"):
        check_layout(folder, "transformers")


def test_model_index_must_name_a_pipeline(tmp_path):
    folder = write_diffusers_folder(tmp_path / "d")
    (folder / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    with pytest.raises(LayoutError, match="no _class_name"):
        check_layout(folder, "diffusers")


def test_a_pickle_only_model_is_accepted(tmp_path):
    folder = write_transformers_folder(tmp_path / "t")
    (folder / "model.safetensors").unlink()
    assert "pytorch_model.bin" in select_files(list_files(folder))
    check_layout(folder, "transformers")
