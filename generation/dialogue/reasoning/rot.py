"""Ripple-of-Thought (GODBench, arXiv 2505.11436): reasoning that spreads from a video's core content outwards,
then candidate replies and quick comments.

    reasoning, candidates = ripple_of_thought(lm, slice_text, n=5, params=params, encoder=text_encoder)

Rings, one short model call each, every ring reading the ones inside it:
1. core: what the media is about;
2. scene: what happens and who is in it;
3. associations: what it brings to mind, feelings, humour;
then the candidates: a JSON list of comments (structured, bounded retries), ranked by `rank_comments` for
relevance to the content and diversity. `reasoning.final_prompt` is a reply prompt built on the rings (for a
chat turn: pass the user's `message`).

Our choices (the paper's full text is not available to us): three rings, as the issue names them; a ring is one
line (stops at the line break); when the model's candidates give fewer than `n` distinct comments (a small base
model often repeats itself), the list is topped up with `extractive_comments` (the viewers' comments and the
content's own salient phrases), never padded with duplicates; `details["from_model"]` says how many came from
the model. A cancel stops before the next model call and returns what was reasoned so far, with no candidates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.reasoning.comments import DEFAULT_DIVERSITY, rank_comments, salient_phrases
from generation.dialogue.reasoning.dcot import Reasoning
from generation.dialogue.reasoning.structured import (
    Cancelled,
    Candidates,
    StructuredOutputError,
    generate_structured,
)
from generation.dialogue.reasoning.templates import LINE_STOP, render, template
from generation.dialogue.types import CommentCandidate
from libs.errors import FieldError

RINGS = ("core", "scene", "associations")
ROT_TEMPLATES = ("rot_core", "rot_scene", "rot_associations", "rot_comments", "rot_reply")
DEFAULT_MESSAGE = "What do you think of it?"


def ripple_of_thought(
    lm: LanguageModel,
    content: str,
    *,
    n: int,
    params: GenerationParams,
    encoder,
    cancel: threading.Event | None = None,
    message: str = "",
    comments: Sequence[str] = (),
    retries: int = 2,
    diversity: float = DEFAULT_DIVERSITY,
) -> tuple[Reasoning, list[CommentCandidate]]:
    """The rings, then `n` ranked distinct candidates (fewer only if the content offers no more)."""
    if not content.strip():
        raise FieldError("content", "must not be empty")
    if n < 1:
        raise FieldError("n", f"must be at least 1, got {n}")
    line_params = replace(params, stop=tuple(dict.fromkeys(params.stop + LINE_STOP)))
    rings: dict[str, str] = {}
    calls, cancelled, failures = 0, False, []
    model_texts: tuple[str, ...] = ()
    try:
        for ring in RINGS:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            prompt = render(f"rot_{ring}", content=content.strip(), **rings)
            rings[ring] = " ".join(lm.complete(prompt, line_params, cancel).split())
            calls += 1
        prompt = render("rot_comments", n=n, **rings)
        try:
            value, attempts = generate_structured(
                lm, prompt, Candidates.from_json, params=params, retries=retries, cancel=cancel
            )
            model_texts, calls = value.texts, calls + attempts
        except StructuredOutputError as exc:
            calls += len(exc.outputs)
            failures.append("rot_comments")
    except Cancelled:
        cancelled = True

    candidates: list[CommentCandidate] = []
    if not cancelled:
        candidates = rank_comments(model_texts, content, n=n, encoder=encoder, diversity=diversity)
        if len(candidates) < n:
            extra = rank_comments(
                [*comments, *salient_phrases(content)],
                content,
                n=n - len(candidates),
                encoder=encoder,
                diversity=diversity,
                exclude=[c.text for c in candidates],
            )
            candidates += extra
    from_model = sum(c.text in model_texts for c in candidates)
    filled = {ring: rings.get(ring, "") for ring in RINGS}
    tags = [template(name).tag for name in ROT_TEMPLATES]
    lines = [f"templates: {' '.join(tags)}"] + [
        f"{ring.capitalize()}: {text}" for ring, text in rings.items()
    ]
    if candidates:
        lines.append(f"Candidates: {' | '.join(c.text for c in candidates)}")
    trace = "\n".join(lines)
    final_prompt = render("rot_reply", message=message.strip() or DEFAULT_MESSAGE, **filled)
    details = {
        "strategy": "ripple_of_thought",
        "templates": tags,
        "rings": filled,
        "from_model": from_model,
        "failures": failures,
        "cancelled": cancelled,
    }
    return Reasoning(trace, final_prompt, calls, details), candidates


__all__ = ["RINGS", "ripple_of_thought"]
