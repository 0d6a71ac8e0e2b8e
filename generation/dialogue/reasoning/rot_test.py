import json
import threading

import pytest

from generation.dialogue.backends import GenerationParams, ScriptedLM
from generation.dialogue.reasoning.rot import ripple_of_thought
from libs.errors import FieldError

PARAMS = GenerationParams(max_new_tokens=96)
SLICE = "A streamer cooks pork dumplings live, folding each with twelve pleats. Steam rises from the basket."
COMMENTS = ["twelve pleats, wow", "I'm hungry now", "what's in the filling?"]


def ring_script(comments: list[str]):
    def script(prompt: str) -> str:
        cue = prompt.rsplit("\n", 1)[-1]
        return {
            "Core:": "A live dumpling cooking stream.",
            "Scene:": "The streamer folds pork dumplings with twelve pleats and steams them.",
            "Associations:": "Family dinners, the smell of steam, pleat-counting contests.",
            "Comments:": json.dumps(comments),
        }.get(cue, "")

    return script


def test_rings_run_from_the_core_outwards_then_n_ranked_distinct_candidates(text_encoder):
    lm = ScriptedLM(
        ring_script(["Those pleats are perfect!", "Pork dumplings for dinner!", "Is it steamed?"])
    )
    reasoning, candidates = ripple_of_thought(
        lm, SLICE, n=3, params=PARAMS, encoder=text_encoder, message="Yum?"
    )
    cues = [p.rsplit("\n", 1)[-1] for p in lm.prompts]
    assert cues == ["Core:", "Scene:", "Associations:", "Comments:"]
    assert "Core: A live dumpling" in lm.prompts[1] and "Scene: The streamer" in lm.prompts[2]
    assert len(candidates) == 3 and len({c.text for c in candidates}) == 3
    assert reasoning.details["from_model"] == 3 and reasoning.steps == 4
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert reasoning.final_prompt.endswith("User: Yum?\nAssistant:")
    assert "Associations: Family dinners" in reasoning.trace and "rot_core@1" in reasoning.trace


def test_repetitive_model_candidates_are_topped_up_from_the_slice_and_viewers(text_encoder):
    lm = ScriptedLM(ring_script(["Yummy dumplings!", "yummy dumplings", "Yummy dumplings!!"]))
    _, candidates = ripple_of_thought(lm, SLICE, n=4, params=PARAMS, encoder=text_encoder, comments=COMMENTS)
    texts = [c.text for c in candidates]
    assert len(texts) == 4 and texts[0] == "Yummy dumplings!"
    assert sum("yummy" in t.lower() for t in texts) == 1
    assert all(t in COMMENTS or t in SLICE for t in texts[1:])


def test_unparseable_candidates_fall_back_to_extractive_ones(text_encoder):
    lm = ScriptedLM(lambda prompt: "" if prompt.endswith("Comments:") else "a line")
    reasoning, candidates = ripple_of_thought(
        lm, SLICE, n=2, params=PARAMS, encoder=text_encoder, comments=COMMENTS, retries=1
    )
    assert reasoning.details["failures"] == ["rot_comments"] and reasoning.steps == 5
    assert len(candidates) == 2 and reasoning.details["from_model"] == 0


def test_cancel_stops_before_the_next_ring(text_encoder):
    cancel = threading.Event()

    def script(prompt: str) -> str:
        cancel.set()
        return "A core."

    lm = ScriptedLM(script)
    reasoning, candidates = ripple_of_thought(
        lm, SLICE, n=3, params=PARAMS, encoder=text_encoder, cancel=cancel
    )
    assert len(lm.prompts) == 1 and reasoning.details["cancelled"] and candidates == []


def test_bad_input_names_the_field(text_encoder):
    with pytest.raises(FieldError) as info:
        ripple_of_thought(ScriptedLM([""]), " ", n=3, params=PARAMS, encoder=text_encoder)
    assert info.value.field == "content"
    with pytest.raises(FieldError) as info:
        ripple_of_thought(ScriptedLM([""]), SLICE, n=0, params=PARAMS, encoder=text_encoder)
    assert info.value.field == "n"
