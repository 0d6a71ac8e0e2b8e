"""One interface over every language model a dialogue can run on: text in, a stream of text pieces out.

Backends are completion-style (a prompt string, not chat messages): the prompt templates
(`generation.dialogue.reasoning.templates`) write few-shot prompts that base models (Gemma 3 270M) continue and
instruction-tuned models follow, so one template serves every backend.

Contract of `stream` (tested for every backend in `backends/contract_test.py`):
- yields the reply as text pieces, about one token each, in order; joining them gives the reply;
- yields at most `params.max_new_tokens` pieces;
- stops before the first occurrence of any `params.stop` string (which is not yielded);
- checks `cancel` before each piece and stops within one piece once it is set;
- `temperature` 0 is greedy and deterministic; above 0 samples, seeded by `params.seed` when given.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from libs.errors import FieldError


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise FieldError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise FieldError("temperature", f"must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise FieldError("top_p", f"must be in (0, 1], got {self.top_p}")


class LanguageModel(abc.ABC):
    """A text generator. `name` says which model it is (logs, eval tables); `context_window` is the most
    prompt + reply tokens it takes."""

    name: str = "language-model"
    context_window: int = 2048

    @abc.abstractmethod
    def stream(
        self, prompt: str, params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        """The reply to `prompt`, a piece at a time (see the module docstring for the contract)."""

    def complete(self, prompt: str, params: GenerationParams, cancel: threading.Event | None = None) -> str:
        """The whole reply at once."""
        return "".join(self.stream(prompt, params, cancel))

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model (whitespace words unless the backend knows better)."""
        return len(text.split())

    def close(self) -> None:
        """Release the model's resources (connections, memory); the default holds none."""
        return None


class StopScanner:
    """Holds back text that could be the start of a stop string, so a backend never yields part of one.

    Feed each decoded piece to `push`; it returns what is safe to yield now and whether a stop string was
    reached (the text before it is returned, the stop string and what follows are dropped)."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.pending = ""

    def push(self, piece: str) -> tuple[str, bool]:
        self.pending += piece
        if not self.stop:
            out, self.pending = self.pending, ""
            return out, False
        hits = [self.pending.find(s) for s in self.stop]
        hits = [h for h in hits if h >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max(
            (k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0
        )
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
