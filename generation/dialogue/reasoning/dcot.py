"""Dual Chain-of-Thought (SeriesBench / PC-DCoT, arXiv 2504.21435) over several clips: a short drama's episodes or
consecutive live slices.

    reasoning = dual_chain_of_thought(lm, "Who is the chef's cousin?", clips, params=params)
    for piece in lm.stream(reasoning.final_prompt, params): ...       # the engine streams the answer
    reasoning.trace                                                   # the two chains, for the reasoning stream

1. **event chain**: the key events of each clip, one structured (JSON) call per clip with bounded retries;
2. **temporal/character chain**: the clips' order, and who is who: one structured call per clip listing people,
   their aliases ("the chef") and relations ("cousin of Mei"), merged across clips by name;
3. **merge**: a final prompt with the timeline (events in clip order), the characters and the question.

Our choices (the paper's full text is not available to us):
- One call per clip and chain, not one call over all clips: each prompt holds a single clip, so a small model (or
  one that attends mostly to the end of a long prompt) reads all of it, and the final prompt holds only the
  distilled chains. The chains do not depend on the question: `extract_chains` runs once per set of clips and
  `merge_prompt` is cheap per question (the evaluation reuses chains across questions).
- The clips' order comes from their metadata, not from the model: the episode number in the title
  ("Episode 3", "Ep. 3", "Part 3", "第3集") when every clip has one, else `start` (live slices) when any clip has
  one, else the order given. Metadata is exact where it exists; the model then orders events *within* a clip.
- Viewer comments are left out of the chains (they are chatter about the story, not the story).
- A clip whose chain step fails after the retries contributes nothing to that chain; `details["failures"]` says
  which, and the answer is still produced from the rest (one bad clip should not cost the whole reply).
- `cancel` is checked before every model call; once set, no further call is made and the partial reasoning is
  returned with `details["cancelled"] = True` (the engine's own stream then stops at once on the same event).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.reasoning.structured import (
    Cancelled,
    Character,
    Characters,
    Events,
    Relation,
    StructuredOutputError,
    generate_structured,
)
from generation.dialogue.reasoning.templates import render, template
from generation.dialogue.types import Attachment
from libs.errors import FieldError

logger = logging.getLogger(__name__)

DCOT_TEMPLATES = ("event_chain", "character_chain", "dcot_answer")
_EPISODE = re.compile(r"(?:episode|ep\.?|part|clip|slice|第)\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Reasoning:
    """What reasoning produced: `trace` (readable, streamed as reasoning), `final_prompt` (the engine streams
    the model on it), `steps` (model calls made, retries included) and `details` (chains, template versions,
    attempts, failures, cancelled)."""

    trace: str
    final_prompt: str
    steps: int
    details: dict


@dataclass
class Chains:
    """Both chains over a set of clips, in clip order."""

    labels: list[str]
    clip_ids: list[str]
    events: list[tuple[str, ...]]
    characters: list[Character]
    calls: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    cancelled: bool = False


def episode_number(clip: Attachment) -> int | None:
    match = _EPISODE.search(clip.title)
    return int(match.group(1)) if match else None


def order_clips(clips: Sequence[Attachment]) -> list[Attachment]:
    """Clips in story order: by episode number in the title when every clip has one, else by `start` when any
    clip has a start or end time, else as given (the sort is stable, so ties keep the given order)."""
    clips = list(clips)
    numbers = [episode_number(c) for c in clips]
    if clips and all(n is not None for n in numbers):
        return [c for _, c in sorted(zip(numbers, clips, strict=True), key=lambda p: p[0])]
    if any(c.start or c.end for c in clips):
        return sorted(clips, key=lambda c: c.start)
    return clips


def clip_label(clip: Attachment, position: int) -> str:
    return clip.title.strip() or f"Clip {position + 1}"


def clip_text(clip: Attachment) -> str:
    """What happens in a clip, in words: caption, text and transcript (not viewer comments)."""
    return "\n".join(p.strip() for p in (clip.caption, clip.text, clip.transcript) if p.strip())


def _check_question(question: str) -> None:
    if not question.strip():
        raise FieldError("question", "must not be empty")


def _check_clips(clips: Sequence[Attachment]) -> None:
    if not clips:
        raise FieldError("clips", "needs at least one clip")


def merge_characters(per_clip: Sequence[Sequence[Character]]) -> list[Character]:
    """One entry per name (case-insensitive, first spelling kept), aliases and relations united, first-seen order."""
    merged: dict[str, Character] = {}
    for characters in per_clip:
        for c in characters:
            key = c.name.casefold()
            old = merged.get(key, Character(c.name))
            merged[key] = Character(
                old.name,
                tuple(dict.fromkeys(old.aliases + c.aliases)),
                tuple(dict.fromkeys(old.relations + c.relations)),
            )
    return list(merged.values())


def extract_chains(
    lm: LanguageModel,
    clips: Sequence[Attachment],
    *,
    params: GenerationParams,
    retries: int = 2,
    cancel: threading.Event | None = None,
) -> Chains:
    """Steps 1 and 2: the event chain, then the temporal/character chain, over the clips in story order."""
    _check_clips(clips)
    ordered = order_clips(clips)
    chains = Chains(
        labels=[clip_label(c, i) for i, c in enumerate(ordered)],
        clip_ids=[c.attachment_id for c in ordered],
        events=[() for _ in ordered],
        characters=[],
    )
    per_clip: list[tuple[Character, ...]] = [() for _ in ordered]
    steps = (("event_chain", Events.from_json), ("character_chain", Characters.from_json))
    try:
        for name, parse in steps:
            for i, clip in enumerate(ordered):
                prompt = render(name, label=chains.labels[i], content=clip_text(clip))
                key = f"{name}:{clip.attachment_id}"
                try:
                    value, attempts = generate_structured(
                        lm, prompt, parse, params=params, retries=retries, cancel=cancel
                    )
                except StructuredOutputError as exc:
                    chains.calls += len(exc.outputs)
                    chains.attempts[key] = len(exc.outputs)
                    chains.failures.append(key)
                    logger.warning("%s gave no valid chain for %r: %s", lm.name, key, exc)
                    continue
                chains.calls += attempts
                chains.attempts[key] = attempts
                if isinstance(value, Events):
                    chains.events[i] = value.events
                else:
                    per_clip[i] = value.characters
    except Cancelled:
        chains.cancelled = True
    chains.characters = merge_characters(per_clip)
    return chains


def timeline_block(chains: Chains) -> str:
    return "\n".join(
        f"{label}: {' '.join(events) if events else '(no events extracted)'}"
        for label, events in zip(chains.labels, chains.events, strict=True)
    )


def character_block(characters: Sequence[Character]) -> str:
    """One plain sentence per fact ("Mei is also called the chef.", "Jun is Mei's cousin.")."""
    lines = []
    for c in characters:
        lines += [f"{c.name} is also called {alias}." for alias in c.aliases]
        lines += [f"{c.name} is {r.of}'s {r.relation}." for r in c.relations]
        if not c.aliases and not c.relations:
            lines.append(f"{c.name} appears.")
    return "\n".join(lines) if lines else "(none found)"


def merge_prompt(question: str, chains: Chains) -> str:
    """Step 3: the final prompt with both chains and the question."""
    _check_question(question)
    return render(
        "dcot_answer",
        timeline=timeline_block(chains),
        characters=character_block(chains.characters),
        question=question.strip(),
    )


def _relation_dict(r: Relation) -> dict:
    return {"relation": r.relation, "of": r.of}


def dual_chain_of_thought(
    lm: LanguageModel,
    question: str,
    clips: Sequence[Attachment],
    *,
    params: GenerationParams,
    retries: int = 2,
    cancel: threading.Event | None = None,
    chains: Chains | None = None,
) -> Reasoning:
    """The three steps; pass `chains` (from `extract_chains` over the same clips) to reuse them."""
    _check_question(question)
    _check_clips(clips)
    if chains is None:
        chains = extract_chains(lm, clips, params=params, retries=retries, cancel=cancel)
    tags = " ".join(template(name).tag for name in DCOT_TEMPLATES)
    trace = (
        f"templates: {tags}\n"
        f"Event chain (clips in order: {' < '.join(chains.labels)}):\n{timeline_block(chains)}\n"
        f"Character chain:\n{character_block(chains.characters)}"
    )
    details = {
        "strategy": "dual_chain_of_thought",
        "templates": [template(name).tag for name in DCOT_TEMPLATES],
        "order": list(chains.clip_ids),
        "events": {cid: list(ev) for cid, ev in zip(chains.clip_ids, chains.events, strict=True)},
        "characters": [
            {
                "name": c.name,
                "aliases": list(c.aliases),
                "relations": [_relation_dict(r) for r in c.relations],
            }
            for c in chains.characters
        ],
        "attempts": dict(chains.attempts),
        "failures": list(chains.failures),
        "cancelled": chains.cancelled,
    }
    return Reasoning(trace, merge_prompt(question, chains), chains.calls, details)


def direct_prompt(question: str, clips: Sequence[Attachment]) -> str:
    """The baseline: every clip's text (in the same story order DCoT uses, so the comparison measures the
    chains, not the sorting), then the question."""
    _check_question(question)
    _check_clips(clips)
    ordered = order_clips(clips)
    blocks = "\n\n".join(f"Clip: {clip_label(c, i)}\n{clip_text(c)}" for i, c in enumerate(ordered))
    return render("direct_answer", clips=blocks, question=question.strip())


__all__ = [
    "Chains",
    "Reasoning",
    "character_block",
    "clip_label",
    "clip_text",
    "direct_prompt",
    "dual_chain_of_thought",
    "episode_number",
    "extract_chains",
    "merge_characters",
    "merge_prompt",
    "order_clips",
    "timeline_block",
]
