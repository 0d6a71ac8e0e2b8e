import threading

import pytest

from generation.dialogue.backends import GenerationParams, ScriptedLM
from generation.dialogue.reasoning.structured import (
    Cancelled,
    Candidates,
    Characters,
    Events,
    Relation,
    StructuredOutputError,
    first_json,
    generate_structured,
)

PARAMS = GenerationParams(max_new_tokens=64)
PROMPT = "List the events.\nClip: Episode 1\nMei cooks.\nEvents:"


def test_first_json_ignores_text_around_the_value():
    assert first_json('Sure! ["a", "b"] and then more [1]') == ["a", "b"]
    with pytest.raises(ValueError, match="no JSON"):
        first_json("nothing here")
    with pytest.raises(ValueError, match="invalid JSON"):
        first_json('["a", ')


def test_schemas_validate_normalise_and_unwrap():
    assert Events.from_json('{"events": [" Mei  cooks. ", "Mei cooks.", ""]}').events == ("Mei cooks.",)
    with pytest.raises(ValueError, match=r"events\[1\] must be a string"):
        Events.from_json('["a", 3]')
    people = Characters.from_json(
        '[{"name": "Jun", "aliases": ["the chef"], "relations": [{"relation": "cousin", "of": "Mei"}]}]'
    )
    assert people.characters[0].relations == (Relation("cousin", "Mei"),)
    with pytest.raises(ValueError, match="non-empty"):
        Characters.from_json('[{"aliases": []}]')
    with pytest.raises(ValueError, match="relations"):
        Characters.from_json('[{"name": "Jun", "relations": ["cousin of Mei"]}]')
    with pytest.raises(ValueError, match="at least one"):
        Candidates.from_json("[]")


def test_a_malformed_output_is_retried_once_with_the_error_appended_then_succeeds():
    lm = ScriptedLM(['["Mei cooks.", ', '["Mei cooks."]'])
    value, attempts = generate_structured(lm, PROMPT, Events.from_json, params=PARAMS)
    assert (value.events, attempts) == (("Mei cooks.",), 2)
    retry = lm.prompts[1]
    assert retry.startswith(PROMPT) and '["Mei cooks.",' in retry
    assert "That is not valid: invalid JSON" in retry
    assert retry.endswith("\nEvents:")


def test_it_gives_up_after_the_retries_with_every_output():
    lm = ScriptedLM(lambda prompt: "no json at all")
    with pytest.raises(StructuredOutputError) as info:
        generate_structured(lm, PROMPT, Events.from_json, params=PARAMS, retries=1)
    assert len(lm.prompts) == 2
    assert info.value.outputs == ["no json at all"] * 2


def test_a_set_cancel_makes_no_call():
    lm = ScriptedLM(['["x"]'])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        generate_structured(lm, PROMPT, Events.from_json, params=PARAMS, cancel=cancel)
    assert lm.prompts == []
