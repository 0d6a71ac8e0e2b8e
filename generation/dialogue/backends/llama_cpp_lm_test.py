from __future__ import annotations

import importlib.util
import sys

import pytest

from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.testing import tiny_causal_lm_dir, tiny_gguf_file

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python not installed (pip install 'kmono[llm]')",
)
PROMPT = "Quick comments: wow, so cute"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("llamacpp")
    model_dir = tiny_causal_lm_dir(root / "lm")
    return model_dir, tiny_gguf_file(model_dir, root / "tiny.gguf")


def test_without_the_package_it_says_how_to_install(monkeypatch, tmp_path):
    from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ImportError, match=r"pip install 'kmono\[llm\]'"):
        LlamaCppLM(tmp_path / "x.gguf")


@needs_llama_cpp
def test_greedy_tokens_match_transformers_on_the_same_weights(tiny):
    """llama.cpp runs the GGUF we wrote (q/k permuted, BPE vocabulary and merges); transformers the original
    directory: the same model gives the same tokens and the same greedy reply."""
    from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM
    from generation.dialogue.backends.transformers_lm import TransformersLM

    model_dir, gguf_path = tiny
    params = GenerationParams(max_new_tokens=8)
    reference = TransformersLM.from_pretrained(model_dir)
    lm = LlamaCppLM(gguf_path, n_ctx=128, n_threads=1)
    try:
        assert lm.context_window == 128
        assert lm.count_tokens(PROMPT) == reference.count_tokens(PROMPT)
        expected = reference.complete(PROMPT, params)
        assert len(expected.replace("\ufffd", "")) >= 4
        # A random model emits stray UTF-8 bytes: transformers decodes them as U+FFFD, llama.cpp drops them.
        assert lm.complete(PROMPT, params) == expected.replace("\ufffd", "")
    finally:
        lm.close()


@needs_llama_cpp
def test_a_missing_file_is_named(tmp_path):
    from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

    with pytest.raises(FileNotFoundError, match="absent.gguf"):
        LlamaCppLM(tmp_path / "absent.gguf")
