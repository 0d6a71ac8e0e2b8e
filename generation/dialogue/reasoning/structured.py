"""Structured outputs: a model's text parsed against a schema, re-prompted with the error on failure, bounded.

    events, attempts = generate_structured(lm, prompt, Events.from_json, params=params, retries=2)

A failed parse re-prompts with the model's own output and the parser's complaint appended, then the original cue
again ("... That is not valid: expected a JSON list. Write it again as valid JSON.\\nEvents:"), because a
completion model corrects best when it sees what it wrote. After `retries` failed re-prompts it raises
`StructuredOutputError` carrying every attempt's output.

The schemas are small frozen dataclasses whose `from_json` reads the *first* JSON value in the text (a base model
often keeps writing after it) and validates types and sizes; any problem is a `ValueError` whose message goes
into the re-prompt. Our choices: a schema accepts a bare list or an object wrapping it ({"events": [...]}), as
instruction models tend to wrap; strings are whitespace-normalised; duplicates are dropped, order kept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.reasoning.templates import STRUCTURED_STOP
from libs.errors import FieldError

T = TypeVar("T")

MAX_ITEMS = 32  # more items than this in one chain step is a runaway generation, not a clip's events


class StructuredOutputError(ValueError):
    """The model did not produce a valid structured output within the allowed attempts."""

    def __init__(self, message: str, outputs: list[str]) -> None:
        super().__init__(message)
        self.outputs = outputs


class Cancelled(Exception):
    """The caller's cancel event was set; no further model call was made."""


def first_json(text: str) -> Any:
    """The first JSON list or object in `text`, ignoring what comes before and after it."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        raise ValueError("no JSON list or object found")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[min(starts) :])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at character {exc.pos})") from None
    return value


def _unwrap(value: Any, key: str) -> Any:
    if isinstance(value, dict) and key in value:
        return value[key]
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a JSON list, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise ValueError(f"{what} has {len(value)} items, at most {MAX_ITEMS}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"{what}[{i}] must be a string, got {type(item).__name__}")
        if (text := " ".join(item.split())) and text not in out:
            out.append(text)
    return tuple(out)


@dataclass(frozen=True)
class Events:
    """The key events of one clip, in the order they happen."""

    events: tuple[str, ...]

    @classmethod
    def from_json(cls, text: str) -> Events:
        return cls(_strings(_unwrap(first_json(text), "events"), "events"))


@dataclass(frozen=True)
class Relation:
    """`relation` of `of`: {"relation": "cousin", "of": "Mei"} on Jun means Jun is Mei's cousin."""

    relation: str
    of: str


@dataclass(frozen=True)
class Character:
    name: str
    aliases: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()


@dataclass(frozen=True)
class Characters:
    characters: tuple[Character, ...]

    @classmethod
    def from_json(cls, text: str) -> Characters:
        value = _unwrap(first_json(text), "characters")
        if isinstance(value, dict) and "name" in value:
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"people must be a JSON list of objects, got {type(value).__name__}")
        if len(value) > MAX_ITEMS:
            raise ValueError(f"people has {len(value)} items, at most {MAX_ITEMS}")
        return cls(tuple(_character(item, i) for i, item in enumerate(value)))


def _character(item: Any, i: int) -> Character:
    if not isinstance(item, dict):
        raise ValueError(f"people[{i}] must be an object with a name, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'people[{i}] needs a non-empty "name"')
    aliases = _strings(item.get("aliases", []), f"people[{i}].aliases")
    relations_in = item.get("relations", [])
    if not isinstance(relations_in, list):
        raise ValueError(f"people[{i}].relations must be a JSON list")
    relations = []
    for j, rel in enumerate(relations_in):
        if not (
            isinstance(rel, dict) and isinstance(rel.get("relation"), str) and isinstance(rel.get("of"), str)
        ):
            raise ValueError(f'people[{i}].relations[{j}] must be {{"relation": "...", "of": "..."}}')
        if rel["relation"].strip() and rel["of"].strip():
            relations.append(Relation(" ".join(rel["relation"].split()), " ".join(rel["of"].split())))
    return Character(" ".join(name.split()), aliases, tuple(dict.fromkeys(relations)))


@dataclass(frozen=True)
class Candidates:
    """Candidate replies or quick comments; at least one."""

    texts: tuple[str, ...]

    @classmethod
    def from_json(cls, text: str) -> Candidates:
        texts = _strings(_unwrap(first_json(text), "comments"), "comments")
        if not texts:
            raise ValueError("comments must hold at least one non-empty string")
        return cls(texts)


def _cue(prompt: str) -> str:
    """The prompt's last line: the open cue ("Events:") the model completes."""
    return prompt.rsplit("\n", 1)[-1]


def retry_prompt(prompt: str, output: str, error: str) -> str:
    """The re-prompt after a failed parse: what the model wrote, what was wrong, and the cue again."""
    return f"{prompt} {output.strip()}\nThat is not valid: {error}. Write it again as valid JSON.\n{_cue(prompt)}"


def generate_structured(
    lm: LanguageModel,
    prompt: str,
    parse: Callable[[str], T],
    *,
    params: GenerationParams,
    retries: int = 2,
    cancel: threading.Event | None = None,
) -> tuple[T, int]:
    """(parsed value, attempts made). At most `1 + retries` model calls; raises `StructuredOutputError` after
    the last failure and `Cancelled` (before any further call) once `cancel` is set."""
    if retries < 0:
        raise FieldError("retries", f"must be at least 0, got {retries}")
    params = replace(params, stop=tuple(dict.fromkeys(params.stop + STRUCTURED_STOP)))
    outputs: list[str] = []
    current = prompt
    for attempt in range(1, retries + 2):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        output = lm.complete(current, params, cancel)
        if cancel is not None and cancel.is_set():
            raise Cancelled
        outputs.append(output)
        try:
            return parse(output), attempt
        except ValueError as exc:
            error = str(exc)
        current = retry_prompt(prompt, output, error)
    raise StructuredOutputError(
        f"no valid output after {len(outputs)} attempts; last error: {error}", outputs
    )


__all__ = [
    "Cancelled",
    "Candidates",
    "Character",
    "Characters",
    "Events",
    "Relation",
    "StructuredOutputError",
    "first_json",
    "generate_structured",
    "retry_prompt",
]
