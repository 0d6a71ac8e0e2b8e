from __future__ import annotations

import os
from pathlib import Path

import pytest

from generation.dialogue.backends import gguf_cache
from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.testing import tiny_causal_lm_dir, tiny_gguf_file
from generation.dialogue.backends.transformers_lm import TransformersLM

PROMPT = "Question: what colour is the sofa? Answer:"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    model_dir = tiny_causal_lm_dir(root / "lm")
    return model_dir, tiny_gguf_file(model_dir, root / "tiny.gguf")


def test_converts_once_then_loads_from_the_cache(tiny, tmp_path, monkeypatch):
    _, gguf_path = tiny
    calls = []
    real_convert = gguf_cache.convert_gguf
    monkeypatch.setattr(gguf_cache, "convert_gguf", lambda *a: calls.append(a) or real_convert(*a))

    first = gguf_cache.load_gguf(gguf_path, cache_root=tmp_path)
    converted = gguf_cache.converted_dir_for(gguf_path, tmp_path)
    weights_mtime = (converted / "model.safetensors").stat().st_mtime_ns
    second = gguf_cache.load_gguf(gguf_path, cache_root=tmp_path)

    assert len(calls) == 1
    assert (converted / "model.safetensors").stat().st_mtime_ns == weights_mtime
    assert "quantization_config" not in (converted / "config.json").read_text()  # a plain fp32 checkpoint
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no partial directory left
    assert first.name == second.name == "tiny"
    params = GenerationParams(max_new_tokens=12)
    assert first.complete(PROMPT, params) == second.complete(PROMPT, params)


def test_the_conversion_decodes_exactly_like_the_original_model(tiny, tmp_path):
    model_dir, gguf_path = tiny
    params = GenerationParams(max_new_tokens=16)
    original = TransformersLM.from_pretrained(model_dir).complete(PROMPT, params)
    assert gguf_cache.load_gguf(gguf_path, cache_root=tmp_path).complete(PROMPT, params) == original


def test_a_replaced_file_converts_again(tiny, tmp_path):
    _, gguf_path = tiny
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(gguf_path.read_bytes())
    before = gguf_cache.converted_dir_for(copy, tmp_path / "cache")
    gguf_cache.cached_conversion(copy, tmp_path / "cache")
    assert gguf_cache.is_converted(copy, tmp_path / "cache")
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert gguf_cache.converted_dir_for(copy, tmp_path / "cache") != before
    assert not gguf_cache.is_converted(copy, tmp_path / "cache")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KMONO_CACHE_DIR", str(tmp_path / "k"))
    assert gguf_cache.lm_cache_dir() == tmp_path / "k" / "lm"
    monkeypatch.delenv("KMONO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert gguf_cache.lm_cache_dir() == tmp_path / "x" / "kmono" / "lm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gguf_cache.lm_cache_dir() == Path.home() / ".cache" / "kmono" / "lm"


def test_a_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        gguf_cache.load_gguf(tmp_path / "nothing.gguf", cache_root=tmp_path)
