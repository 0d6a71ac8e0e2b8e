import json

from generation.dialogue.backends import GenerationParams
from generation.dialogue.reasoning.dcot import direct_prompt, episode_number
from generation.dialogue.reasoning.stories import (
    Question,
    QuestionKind,
    ScriptedReader,
    is_correct,
    make_stories,
)

PARAMS = GenerationParams(max_new_tokens=64)


def test_stories_are_seeded_shuffled_and_span_three_to_five_episodes():
    a, b = make_stories(6, seed=3), make_stories(6, seed=3)
    assert a == b and a != make_stories(6, seed=4)
    for story in a:
        numbers = [episode_number(c) for c in story.clips]
        assert sorted(numbers) == list(range(1, len(numbers) + 1)) and 3 <= len(numbers) <= 5
        assert {q.kind for q in story.questions} == set(QuestionKind)
    assert any([episode_number(c) for c in s.clips] != sorted(episode_number(c) for c in s.clips) for s in a)


def test_the_gold_answers_agree_with_the_story_text_read_in_full():
    # A reader that sees everything answers every question right from the clips alone: gold and text agree.
    reader = ScriptedReader(span_words=10_000)
    for story in make_stories(5, seed=0):
        for q in story.questions:
            assert is_correct(q, reader.complete(direct_prompt(q.text, story.clips), PARAMS)), q


def test_the_reader_only_sees_its_span():
    reader = ScriptedReader(span_words=3)
    assert reader.visible("one two\nthree four five") == "three four five"
    out = reader.complete(
        "Clip: Episode 1\nMei burns the soup. The rain falls. Jun is Mei's cousin.\nEvents:", PARAMS
    )
    assert json.loads(out) == ["Mei's cousin."]  # it read a fragment of the last sentence, nothing before it
    wide = ScriptedReader(span_words=100)
    out = wide.complete(
        "Clip: Episode 1\nMei burns the soup. The rain falls. Jun is Mei's cousin.\nPeople:", PARAMS
    )
    assert json.loads(out) == [
        {"name": "Jun", "aliases": [], "relations": [{"relation": "cousin", "of": "Mei"}]}
    ]


def test_is_correct_rejects_answers_naming_a_wrong_option():
    order = Question(QuestionKind.ORDER, "?", "Mei burns the soup", ("Jun sells the boat",))
    assert is_correct(order, "Mei burns the soup.") and not is_correct(order, "Jun sells the boat")
    episode = Question(QuestionKind.EPISODE, "?", "Episode 2", ("Episode 1", "Episode 3"))
    assert is_correct(episode, "episode 2") and not is_correct(episode, "Episode 2 or 3")
    who = Question(QuestionKind.CHARACTER, "?", "Jun", ("Mei",))
    assert (
        is_correct(who, "Jun.") and not is_correct(who, "Jun or Mei") and not is_correct(who, "I don't know")
    )
