import json
import threading

import pytest

from generation.dialogue.backends import GenerationParams, ScriptedLM
from generation.dialogue.reasoning.dcot import direct_prompt, dual_chain_of_thought, order_clips
from generation.dialogue.types import Attachment, AttachmentKind
from libs.errors import FieldError

PARAMS = GenerationParams(max_new_tokens=128)


def clip(clip_id: str, title: str, text: str, start: float = 0.0) -> Attachment:
    return Attachment(clip_id, AttachmentKind.VIDEO, title=title, transcript=text, start=start, end=start)


# Given shuffled: the story order is Episode 1 (c3), Episode 2 (c1), Episode 3 (c2).
CLIPS = (
    clip("c1", "Episode 2", "Jun finds a wallet. Jun is Mei's cousin."),
    clip("c2", "Episode 3", "Mei sells the boat."),
    clip("c3", "Episode 1", "Mei burns the soup. Mei is also called the chef."),
)


def chain_script(prompt: str) -> str:
    """Answers each chain prompt from the clip text in it, as a model following the template would."""
    text = prompt.rsplit("Clip: ", 1)[-1]
    if prompt.endswith("Events:"):
        return json.dumps([s + "." for s in text.split("\n", 1)[1].split(". ") if " is " not in s][:1])
    if prompt.endswith("People:"):
        if "Jun is Mei's cousin" in text:
            return '[{"name": "Jun", "relations": [{"relation": "cousin", "of": "Mei"}]}]'
        if "the chef" in text:
            return '[{"name": "Mei", "aliases": ["the chef"]}]'
        return "[]"
    return "?"


def test_three_steps_in_order_with_the_right_templates():
    lm = ScriptedLM(chain_script)
    r = dual_chain_of_thought(lm, "Who is the chef's cousin?", CLIPS, params=PARAMS)
    # Step 1: one event-chain prompt per clip, in story order; step 2: one character-chain prompt per clip.
    assert [p.rsplit("Clip: ", 1)[1].split("\n")[0] for p in lm.prompts] == [
        "Episode 1",
        "Episode 2",
        "Episode 3",
    ] * 2
    assert all(p.endswith("Events:") for p in lm.prompts[:3])
    assert all(p.endswith("People:") for p in lm.prompts[3:])
    assert r.steps == 6 and not r.details["failures"] and not r.details["cancelled"]
    assert r.details["order"] == ["c3", "c1", "c2"]
    assert r.details["templates"] == ["event_chain@1", "character_chain@1", "dcot_answer@1"]
    # Step 3: the merged prompt holds the timeline in order, both chains and the question.
    timeline = r.final_prompt.split("Timeline:\n")[1]
    assert (
        timeline.index("Mei burns the soup")
        < timeline.index("Jun finds a wallet")
        < timeline.index("Mei sells")
    )
    assert "Mei is also called the chef." in r.final_prompt and "Jun is Mei's cousin." in r.final_prompt
    assert r.final_prompt.endswith("Question: Who is the chef's cousin?\nAnswer:")
    assert r.trace.startswith("templates: event_chain@1") and "Episode 1 < Episode 2 < Episode 3" in r.trace


def test_a_malformed_chain_is_retried_once_then_used():
    calls = {"n": 0}

    def flaky(prompt: str) -> str:
        calls["n"] += 1
        return "[oops" if calls["n"] == 1 else chain_script(prompt)

    r = dual_chain_of_thought(ScriptedLM(flaky), "q?", CLIPS, params=PARAMS)
    assert r.details["attempts"]["event_chain:c3"] == 2 and r.steps == 7
    assert r.details["events"]["c3"] == ["Mei burns the soup."] and not r.details["failures"]


def test_a_clip_that_never_parses_is_given_up_after_the_retries_and_the_rest_still_answers():
    def broken_for_c1(prompt: str) -> str:
        return "no idea" if "Episode 2" in prompt.rsplit("Clip: ", 1)[1] else chain_script(prompt)

    lm = ScriptedLM(broken_for_c1)
    r = dual_chain_of_thought(lm, "q?", CLIPS, params=PARAMS, retries=1)
    assert r.details["failures"] == ["event_chain:c1", "character_chain:c1"]
    assert r.details["attempts"]["event_chain:c1"] == 2 and r.steps == len(lm.prompts) == 8
    assert "Episode 2: (no events extracted)" in r.final_prompt
    assert "Mei is also called the chef." in r.final_prompt


def test_order_clips_by_episode_number_then_start_then_as_given():
    assert [c.attachment_id for c in order_clips(CLIPS)] == ["c3", "c1", "c2"]
    chinese = [clip("b", "第10集", "x"), clip("a", "第2集", "y")]
    assert [c.attachment_id for c in order_clips(chinese)] == ["a", "b"]
    slices = [clip("late", "Live", "x", start=60.0), clip("early", "Live", "y", start=0.0)]
    assert [c.attachment_id for c in order_clips(slices)] == ["early", "late"]
    plain = [clip("z", "", "x"), clip("y", "", "y")]
    assert [c.attachment_id for c in order_clips(plain)] == ["z", "y"]


def test_cancel_stops_before_the_next_model_call():
    cancel = threading.Event()

    def cancelling(prompt: str) -> str:
        cancel.set()
        return chain_script(prompt)

    lm = ScriptedLM(cancelling)
    r = dual_chain_of_thought(lm, "q?", CLIPS, params=PARAMS, cancel=cancel)
    assert len(lm.prompts) == 1 and r.details["cancelled"]


def test_direct_prompt_holds_every_clip_in_story_order_then_the_question():
    p = direct_prompt("What happened first?", CLIPS)
    assert (
        p.index("Mei burns")
        < p.index("Jun finds")
        < p.index("Mei sells")
        < p.index("Question: What happened")
    )
    assert p.endswith("Answer:")


def test_bad_input_names_the_field():
    with pytest.raises(FieldError) as info:
        dual_chain_of_thought(ScriptedLM([""]), " ", CLIPS, params=PARAMS)
    assert info.value.field == "question"
    with pytest.raises(FieldError) as info:
        direct_prompt("q?", [])
    assert info.value.field == "clips"
