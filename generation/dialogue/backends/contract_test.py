"""Every backend honours the `LanguageModel` stream contract (base.py): pieces, max_new_tokens, stop strings,
cancel within one piece, greedy determinism, seeded sampling. Real backends run a tiny random model (a tiny
directory, its GGUF through the conversion cache, the GGUF in llama.cpp) or a local OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator

import pytest

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.backends.scripted import ScriptedLM
from generation.dialogue.backends.testing import openai_completions_server, tiny_causal_lm_dir, tiny_gguf_file

PROMPT = "Question: what colour is the sofa? Answer:"
SCRIPT = "The sofa is blue, it costs forty dollars, and it ships in two days. Anything else I can help with?"
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-lm")
    model_dir = tiny_causal_lm_dir(root / "lm")
    return model_dir, tiny_gguf_file(model_dir, root / "tiny.gguf"), root / "cache"


@contextlib.contextmanager
def make_backend(kind: str, tiny_files) -> Iterator[LanguageModel]:
    model_dir, gguf_path, cache_root = tiny_files
    if kind == "scripted":
        yield ScriptedLM(lambda prompt: SCRIPT)
    elif kind == "transformers":
        from generation.dialogue.backends.transformers_lm import TransformersLM

        yield TransformersLM.from_pretrained(model_dir)
    elif kind == "gguf-transformers":
        from generation.dialogue.backends.gguf_cache import load_gguf

        yield load_gguf(gguf_path, cache_root=cache_root)
    elif kind == "openai":
        from generation.dialogue.backends.openai_http import OpenAICompatibleLM

        with openai_completions_server(ScriptedLM(lambda prompt: SCRIPT), model="m") as server:
            yield OpenAICompatibleLM(server.base_url, "m", timeout=10)
    elif kind == "llamacpp":
        from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

        lm = LlamaCppLM(gguf_path, n_ctx=256, n_threads=1)
        yield lm
        lm.close()


BACKENDS = [
    "scripted",
    "transformers",
    "gguf-transformers",
    "openai",
    pytest.param(
        "llamacpp", marks=pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed")
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tiny_files):
    with make_backend(request.param, tiny_files) as lm:
        yield lm


def greedy(max_new_tokens: int = 24, **kwargs) -> GenerationParams:
    return GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, **kwargs)


def test_pieces_join_to_the_reply_and_greedy_is_deterministic(backend):
    pieces = list(backend.stream(PROMPT, greedy()))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == backend.complete(PROMPT, greedy())
    assert len(pieces) > 1  # streamed, not one block at the end


def test_at_most_max_new_tokens_pieces_and_a_longer_budget_extends_the_same_reply(backend):
    short = list(backend.stream(PROMPT, greedy(max_new_tokens=3)))
    assert 1 <= len(short) <= 3
    assert backend.complete(PROMPT, greedy(max_new_tokens=24)).startswith("".join(short))


def test_stops_before_the_first_stop_string(backend):
    reply = backend.complete(PROMPT, greedy())
    middle = len(reply) // 2
    stop = reply[middle : middle + 2]
    assert len(stop) == 2
    stopped = backend.complete(PROMPT, greedy(stop=("@@never@@", stop)))
    assert stopped == reply[: reply.find(stop)]
    assert stop not in stopped


def test_cancel_stops_within_one_piece(backend):
    cancel = threading.Event()
    received = []
    for piece in backend.stream(PROMPT, greedy(), cancel):
        received.append(piece)
        cancel.set()
    assert len(received) <= 2
    cancel_first = threading.Event()
    cancel_first.set()
    assert list(backend.stream(PROMPT, greedy(), cancel_first)) == []


def test_seeded_sampling_is_reproducible(backend):
    params = GenerationParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    assert backend.complete(PROMPT, params) == backend.complete(PROMPT, params)


def test_counts_tokens_and_has_a_context_window(backend):
    assert backend.count_tokens("the sofa is blue") >= 4 > backend.count_tokens("") >= 0
    assert backend.count_tokens("the sofa is blue and green") > backend.count_tokens("the sofa")
    assert backend.context_window >= 256
    assert backend.name
