"""Tiny fake model folders for tests: the files a loader looks for, with a few bytes where the weights go.

They are not loadable (the weights are not safetensors); they have the shape `layout.check_layout` checks, plus
the extras a published repository carries that `select_files` leaves out (a pickle beside the safetensors, a
precision variant, git attributes), so a test sees both what is staged and what is not.
"""

from __future__ import annotations

import json
from pathlib import Path


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def write_transformers_folder(root: str | Path) -> Path:
    """A transformers model folder: config.json, model.safetensors, tokenizer and processor configs, and the
    extras a hub repository has (pytorch_model.bin, an ONNX export, .gitattributes, README.md)."""
    root = Path(root)
    _write(root / "config.json", json.dumps({"model_type": "fake", "hidden_size": 8}))
    _write(root / "model.safetensors", b"weights " * 64)
    _write(root / "tokenizer_config.json", json.dumps({"model_max_length": 32}))
    _write(root / "preprocessor_config.json", json.dumps({"size": {"height": 64, "width": 64}}))
    _write(root / "README.md", "# fake model\nlicence: MIT\n")
    _write(root / "pytorch_model.bin", b"pickle " * 64)  # left out: safetensors are beside it
    _write(root / "onnx" / "model.onnx", b"onnx")  # left out: another framework
    _write(root / ".gitattributes", "*.safetensors filter=lfs\n")  # left out: hidden
    return root


TRANSFORMERS_STAGED = [
    "README.md",
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer_config.json",
]
"""What `select_files` keeps of `write_transformers_folder`."""


def write_diffusers_folder(root: str | Path) -> Path:
    """A diffusers pipeline folder: model_index.json; a transformer (plain and fp16 weights), a VAE with sharded
    weights and their index, a scheduler, a tokenizer, and an optional component set to [null, null]."""
    root = Path(root)
    index = {
        "_class_name": "FakePipeline",
        "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "FakeTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "tokenizer": ["transformers", "BertTokenizer"],
        "safety_checker": [None, None],
    }
    _write(root / "model_index.json", json.dumps(index))
    _write(root / "transformer" / "config.json", json.dumps({"num_layers": 1}))
    _write(root / "transformer" / "diffusion_pytorch_model.safetensors", b"transformer " * 32)
    _write(root / "transformer" / "diffusion_pytorch_model.fp16.safetensors", b"half " * 32)  # left out
    _write(root / "vae" / "config.json", json.dumps({"latent_channels": 4}))
    shards = [
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
    ]
    for i, shard in enumerate(shards):
        _write(root / "vae" / shard, f"shard {i} ".encode() * 16)
    weight_map = {"encoder.weight": shards[0], "decoder.weight": shards[1]}
    _write(
        root / "vae" / "diffusion_pytorch_model.safetensors.index.json",
        json.dumps({"weight_map": weight_map}),
    )
    _write(root / "scheduler" / "scheduler_config.json", json.dumps({"_class_name": "DDIMScheduler"}))
    _write(root / "tokenizer" / "tokenizer_config.json", json.dumps({"model_max_length": 16}))
    _write(root / "tokenizer" / "vocab.txt", "[PAD]\n[UNK]\nball\n")
    return root


DIFFUSERS_STAGED = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.txt",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
    "vae/diffusion_pytorch_model-00002-of-00002.safetensors",
    "vae/diffusion_pytorch_model.safetensors.index.json",
]
"""What `select_files` keeps of `write_diffusers_folder`."""
