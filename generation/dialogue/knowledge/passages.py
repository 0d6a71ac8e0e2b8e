"""A session's knowledge as passages: the units retrieval ranks and answers are cut from.

`passages_of(attachments)` reads every attachment's words:
- document text (`Attachment.text`, any kind): a "key: value" line (also with the full-width colon "：") is one
  *fact*; a line that asks and answers ("Does it come with a charger? Yes, a 20 W one.") is one *faq* pair
  (production FAQ indexing: the question finds it, the answer is cut from it); other lines are split into
  *sentences*;
- transcripts into timed *transcript* sentences; captions into *caption* sentences; each viewer comment is one
  *comment*. The title is not a passage of its own: every passage carries it (retrieval reads "title. text",
  so "the Aurora X2's battery" finds the Aurora X2's "Battery: ..." line).

Sentences split after Chinese/Japanese terminators (。！？；…) and after English ones (. ! ?) followed by a
space, never inside a number ("3.5 kg") or an abbreviation-free run. Text is never rewritten: every passage's
`text` is a substring of what the client sent (stripped of surrounding spaces), so multilingual text passes
through unchanged.

Times (our choice; the proto's transcript is plain text): a transcript line may start with a timestamp
("[01:23]", "[1:02:03]", "[83.5s]", "(01:23)"), an offset in seconds from the attachment's `start`; such a
sentence runs to the next timestamp (or the attachment's `end`). Without timestamps, and when the attachment
has `end > start`, each sentence gets the share of [start, end] its characters take of the transcript (speech
runs at a roughly even rate). Without either, transcript times are the attachment's own span or None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from generation.dialogue.types import Attachment

FACT, FAQ, SENTENCE, TRANSCRIPT, CAPTION, COMMENT = (
    "fact",
    "faq",
    "sentence",
    "transcript",
    "caption",
    "comment",
)
MAX_KEY_CHARS = 40
"""A "key: value" line's key is short; a longer text before a colon is a sentence (e.g. "Note: ..." stays a fact)."""

_FACT = re.compile(rf"^\s*(?P<key>[^:：\n]{{1,{MAX_KEY_CHARS}}}?)\s*[:：]\s*(?P<value>\S.*?)\s*$")
# A sentence ends at CJK terminators (no space needed) or at . ! ? followed by space/end, not between digits.
_SENTENCE_END = re.compile(r"(?<=[。！？；…!?])\s*|(?<=[.;])(?!\d)\s+|(?<=[.;])$")
_TIMESTAMP = re.compile(r"^\s*[\[(]\s*(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)\s*[\])]\s*")
_SECONDS = re.compile(r"^\s*[\[(]\s*(?P<sec>\d+(?:\.\d+)?)\s*s?\s*[\])]\s*")
_FAQ = re.compile(r"^\s*(?P<question>[^?？]{3,}[?？])\s*(?P<answer>\S.*?)\s*$")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit. `source_id` is the attachment it came from (cited); `start`/`end` place a
    transcript sentence in its stream (seconds). `kind`: fact, faq, sentence, transcript, caption or comment."""

    passage_id: str
    source_id: str
    title: str
    text: str
    uri: str = ""
    start: float | None = None
    end: float | None = None
    kind: str = SENTENCE

    def searchable(self) -> str:
        """What retrieval reads: the title (the product or stream) in front of the text."""
        return f"{self.title}. {self.text}" if self.title else self.text


def fact_parts(text: str) -> tuple[str, str] | None:
    """(key, value) of a "key: value" line, or None."""
    match = _FACT.match(text)
    if match is None or "://" in text[: match.end("key") + 3]:
        return None
    return match.group("key"), match.group("value")


def faq_parts(text: str) -> tuple[str, str] | None:
    """(question, answer) of a line that asks and then answers, or None."""
    match = _FAQ.match(text)
    return (match.group("question"), match.group("answer")) if match else None


def split_sentences(text: str) -> list[str]:
    """Sentences of a text in order, each a stripped substring of it (Chinese and English terminators)."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if match.start() > start:
                sentences.append(line[start : match.start()].strip())
            start = match.end()
        if start < len(line):
            sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def passages_of(attachments: Sequence[Attachment]) -> list[Passage]:
    """Every attachment's passages, attachments in order, each attachment's passages in reading order."""
    passages: list[Passage] = []
    for attachment in attachments:
        units: list[tuple[str, str, float | None, float | None]] = []
        units += [(kind, text, None, None) for kind, text in _document_units(attachment.text)]
        units += [(CAPTION, s, None, None) for s in split_sentences(attachment.caption)]
        units += [(TRANSCRIPT, s, a, b) for s, a, b in _timed_sentences(attachment)]
        units += [(COMMENT, c.strip(), None, None) for c in attachment.comments if c.strip()]
        passages += [
            Passage(
                passage_id=f"{attachment.attachment_id}#{n}",
                source_id=attachment.attachment_id,
                title=attachment.title,
                text=text,
                uri=attachment.uri,
                start=start,
                end=end,
                kind=kind,
            )
            for n, (kind, text, start, end) in enumerate(units)
        ]
    return passages


def _document_units(text: str) -> list[tuple[str, str]]:
    units: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if fact_parts(line) is not None:
            units.append((FACT, line.strip()))
        elif faq_parts(line) is not None:
            units.append((FAQ, line.strip()))
        else:
            units += [(SENTENCE, s) for s in split_sentences(line)]
    return units


def _timed_sentences(attachment: Attachment) -> list[tuple[str, float | None, float | None]]:
    """Transcript sentences with (start, end) in stream seconds, see the module docstring."""
    lines: list[tuple[float | None, str]] = []
    for line in attachment.transcript.splitlines():
        offset, rest = _leading_timestamp(line)
        if rest.strip():
            lines.append((offset, rest))
    has_span = attachment.end > attachment.start
    if any(offset is not None for offset, _ in lines):
        return _stamped(lines, attachment)
    sentences = [s for _, line in lines for s in split_sentences(line)]
    if not has_span:
        return [(s, None, None) for s in sentences]
    total = sum(len(s) for s in sentences) or 1
    span = attachment.end - attachment.start
    timed, done = [], 0
    for sentence in sentences:
        a = attachment.start + span * done / total
        done += len(sentence)
        timed.append((sentence, a, attachment.start + span * done / total))
    return timed


def _stamped(lines: list[tuple[float | None, str]], attachment: Attachment) -> list[tuple[str, float, float]]:
    """Each stamped line runs to the next stamp; unstamped lines continue the line before them."""
    base = attachment.start
    last = attachment.end if attachment.end > attachment.start else None
    stamps = [offset for offset, _ in lines]
    timed: list[tuple[str, float, float]] = []
    current = 0.0
    for i, (offset, line) in enumerate(lines):
        current = offset if offset is not None else current
        following = next((s for s in stamps[i + 1 :] if s is not None), None)
        end = (
            base + following
            if following is not None
            else (float(last) if last is not None else base + current)
        )
        timed += [(s, base + current, max(end, base + current)) for s in split_sentences(line)]
    return timed


def _leading_timestamp(line: str) -> tuple[float | None, str]:
    match = _TIMESTAMP.match(line)
    if match:
        hours = float(match.group("h") or 0)
        return hours * 3600 + float(match.group("m")) * 60 + float(match.group("s")), line[match.end() :]
    match = _SECONDS.match(line)
    if match:
        return float(match.group("sec")), line[match.end() :]
    return None, line
