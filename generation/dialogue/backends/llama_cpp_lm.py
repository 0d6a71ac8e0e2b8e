"""A GGUF model run natively by llama.cpp (`llama-cpp-python`, optional: pip install 'kmono[llm]').

    lm = LlamaCppLM("/models/gemma-3-270m-q4_k_m.gguf", n_ctx=4096, n_threads=2)

llama.cpp keeps the weights quantised and decodes with its own CPU kernels: for the bundled Gemma it loads in
about a second and decodes 6x faster than transformers' de-quantised fp32 (figures in `gemma.py`, measured by
`benchmarks/dialogue_backends.py`). Threads: see `DEFAULT_THREADS`; prompts and decoding use the same count. Sampling is configured to match the other backends exactly: temperature 0 is
llama.cpp's greedy sampler; otherwise only temperature and top-p apply (llama.cpp's own defaults of top-k 40 and
min-p 0.05 are switched off), seeded by `params.seed`.

One `Llama` context holds one KV cache, so streams on the same instance run one at a time (a lock, held while a
stream is being consumed); serve concurrent users with one instance each. The import is lazy: this module
imports without llama-cpp-python, and constructing the backend then says how to install it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner
from libs.errors import FieldError

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
# llama.cpp's own default: one thread per physical core (half the logical CPUs with SMT). Its OpenMP threads
# spin while they wait, so more threads than free cores is far slower, not faster: on our shared 2-core machine
# Gemma 270M decoded 31-39 tokens/s with 1 thread and 3-6 tokens/s with 2 (benchmarks/dialogue_backends.py).
DEFAULT_THREADS = max(1, (os.cpu_count() or 2) // 2)
INSTALL_HINT = "pip install 'kmono[llm]' (or pip install llama-cpp-python; it builds llama.cpp from source)"


class LlamaCppLM(LanguageModel):
    def __init__(
        self,
        gguf_path: str | Path,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        *,
        n_gpu_layers: int = 0,
        name: str | None = None,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise ImportError(f"llama.cpp backend needs llama-cpp-python: {INSTALL_HINT}") from error
        gguf_path = Path(gguf_path)
        if not gguf_path.is_file():
            raise FileNotFoundError(f"no GGUF file at {gguf_path}")
        self.llama = Llama(
            model_path=str(gguf_path),
            n_ctx=n_ctx,
            n_threads=n_threads or DEFAULT_THREADS,
            # llama-cpp-python evaluates prompts with all logical CPUs unless told: on our 2-core machine that
            # spun the prompt (time to first token) from 0.15 to 3.6 CPU-seconds. One thread count for both.
            n_threads_batch=n_threads or DEFAULT_THREADS,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
        self.name = name or gguf_path.stem
        # llama.cpp rounds its context up (to a multiple of 256): promise callers only what they asked for.
        self.context_window = min(n_ctx, self.llama.n_ctx())
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _prompt_tokens(self, prompt: str, max_new_tokens: int) -> list[int]:
        budget = self.context_window - max_new_tokens
        if budget < 1:
            raise FieldError(
                "max_new_tokens",
                f"must be below the context window ({self.context_window}), got {max_new_tokens}",
            )
        tokens = self.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > budget:
            logger.warning(
                "prompt of %d tokens cut to its last %d (context %d)",
                len(tokens),
                budget,
                self.context_window,
            )
            tokens = tokens[-budget:]
        return tokens

    def stream(
        self, prompt: str, params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        tokens = self._prompt_tokens(prompt, params.max_new_tokens)
        scanner = StopScanner(params.stop)
        with self._lock:
            chunks = self.llama.create_completion(
                tokens,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                seed=params.seed,
                stream=True,
            )
            try:
                # llama-cpp-python can yield a token's held-back bytes as an extra chunk: count pieces too.
                for count, chunk in enumerate(chunks):
                    if count >= params.max_new_tokens or (cancel is not None and cancel.is_set()):
                        return
                    out, stopped = scanner.push(chunk["choices"][0]["text"])
                    if out:
                        yield out
                    if stopped:
                        return
            finally:
                chunks.close()  # stops llama.cpp's decoding loop now, not when the generator is collected
        if tail := scanner.flush():
            yield tail

    def close(self) -> None:
        self.llama.close()
