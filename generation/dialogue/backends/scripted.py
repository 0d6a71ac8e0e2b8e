"""A language model that answers from a script: the deterministic backend of tests and orchestration checks.

    lm = ScriptedLM(lambda prompt: "Paris" if "capital of France" in prompt else "I don't know")
    lm = ScriptedLM(["first reply", "second reply"])      # replies in call order, then the last one again

It honours the whole `LanguageModel` contract (pieces, `max_new_tokens`, stop strings, cancel), so the
engine and the service are tested on the same code path a real model takes. `prompts` records every prompt
it was given; `delay` (seconds per piece) lets tests cancel a reply mid-stream.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner

_PIECES = re.compile(r"\s*\S+|\s+")


class ScriptedLM(LanguageModel):
    name = "scripted"

    def __init__(
        self, script: Callable[[str], str] | Sequence[str], *, delay: float = 0.0, context_window: int = 4096
    ) -> None:
        self.script = script
        self.delay = delay
        self.context_window = context_window
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def reply_to(self, prompt: str) -> str:
        with self._lock:
            self.prompts.append(prompt)
            if callable(self.script):
                return self.script(prompt)
            index = min(len(self.prompts), len(self.script)) - 1
            return self.script[index] if self.script else ""

    def stream(
        self, prompt: str, params: GenerationParams, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        scanner = StopScanner(params.stop)
        for count, piece in enumerate(_PIECES.findall(self.reply_to(prompt))):
            if count >= params.max_new_tokens or (cancel is not None and cancel.is_set()):
                return
            if self.delay:
                time.sleep(self.delay)
            out, stopped = scanner.push(piece)
            if out:
                yield out
            if stopped:
                return
        if tail := scanner.flush():
            yield tail
