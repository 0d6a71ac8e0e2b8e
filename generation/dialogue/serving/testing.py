"""A tiny dialogue engine for tests: a temporary store, the shared MiniLM and, when asked, a scripted LM.

    engine = tiny_engine(tmp_path, encoder)                          # the embedded default (no LM)
    engine = tiny_engine(tmp_path, encoder, lm=echo_lm(delay=0.02))  # a slow scripted LM (cancel tests)

`PRODUCT` and `LIVE_SLICE` are the knowledge the engine, service, demo and reliability tests talk about: a
phone's product details (facts) and a live slice's transcript and viewer comments.
"""

from __future__ import annotations

import re
from pathlib import Path

from generation.dialogue.backends.base import LanguageModel
from generation.dialogue.backends.scripted import ScriptedLM
from generation.dialogue.serving.engine import DialogueEngine
from generation.dialogue.serving.settings import DialogueSettings
from generation.dialogue.serving.store import SessionStore
from generation.dialogue.types import Attachment, AttachmentKind

PRODUCT = Attachment(
    "x200",
    AttachmentKind.DOCUMENT,
    title="Aurora X200 phone",
    text="Battery: 5000 mAh\nWeight: 187 g\nScreen: 6.7 inch OLED\nPrice: 2999 yuan\nColours: black, silver, green\n"
    "Does it come with a charger? Yes, a 67 W charger is in the box.",
)
LIVE_SLICE = Attachment(
    "slice-1",
    AttachmentKind.LIVE_STREAM,
    title="Dumpling night live",
    stream_id="live-42",
    author_id="chef-mei",
    transcript="Tonight we fold pork and chive dumplings. The dough rests for twenty minutes. "
    "Pinch the edges tightly so they do not burst in the pot.",
    comments=(
        "these dumplings look amazing",
        "how long does the dough rest?",
        "pinch tighter!",
        "chive and pork is the best filling",
        "hello from Berlin",
    ),  # fmt: skip
    end=60.0,
)
ECHO_REPLY = (
    "Happy to help with that: it is a fine question and here is a longer answer with many words to stream"
)


def echo_lm(delay: float = 0.0, reply: str = ECHO_REPLY) -> ScriptedLM:
    """A scripted LM that answers every prompt with `reply` (its last user line appended), `delay` s per piece."""

    def script(prompt: str) -> str:
        asked = re.findall(r"^User: (.*)$", prompt, flags=re.MULTILINE)
        return f"{reply} ({asked[-1]})" if asked else reply

    return ScriptedLM(script, delay=delay)


def tiny_engine(
    data_dir: str | Path, encoder, *, lm: LanguageModel | None = None, **settings: object
) -> DialogueEngine:
    """An engine over `data_dir/sessions.db` with `settings` overriding `DialogueSettings`' defaults."""
    store = SessionStore(Path(data_dir) / "sessions.db")
    return DialogueEngine(store, encoder, lm, DialogueSettings(**settings))  # type: ignore[arg-type]
