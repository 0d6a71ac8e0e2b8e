import pytest

from generation.dialogue.reasoning.comments import extractive_comments, rank_comments, salient_phrases
from libs.errors import FieldError

SLICE = "A streamer shows a golden retriever puppy playing with a red ball in the garden."


def test_relevant_candidates_rank_above_irrelevant_ones(text_encoder):
    ranked = rank_comments(
        ["The stock market fell today.", "What a playful puppy with its ball!", "I like trains."],
        SLICE,
        n=3,
        encoder=text_encoder,
        diversity=0.0,
    )
    assert ranked[0].text == "What a playful puppy with its ball!"
    assert [c.relevance for c in ranked] == sorted((c.relevance for c in ranked), reverse=True)


def test_duplicates_and_empty_candidates_are_dropped(text_encoder):
    # "what breed is it?" / "what breed is that puppy?": cosine 0.88 with MiniLM, a near-duplicate.
    candidates = [
        "so cute puppy!",
        "So cute puppy",
        "  ",
        "so cute puppy!!!",
        "what breed is it?",
        "what breed is that puppy?",
    ]
    ranked = rank_comments(candidates, SLICE, n=5, encoder=text_encoder)
    texts = [c.text for c in ranked]
    assert len(texts) == 2
    assert sum("cute puppy" in t for t in texts) == 1 and sum("breed" in t for t in texts) == 1
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)


def test_diversity_penalises_a_candidate_close_to_one_already_picked(text_encoder):
    # Relevance: retriever 0.39 > breed 0.33 > cute 0.28; breed is 0.62 similar to retriever, cute 0.43.
    candidates = ["is that a golden retriever?", "what breed is that puppy?", "so cute puppy!"]
    greedy = rank_comments(candidates, SLICE, n=2, encoder=text_encoder, diversity=0.0)
    diverse = rank_comments(candidates, SLICE, n=2, encoder=text_encoder, diversity=0.5)
    assert [c.text for c in greedy] == candidates[:2]
    assert [c.text for c in diverse] == [candidates[0], candidates[2]]


def test_exclude_counts_as_already_picked(text_encoder):
    ranked = rank_comments(
        ["so cute puppy!", "what breed is it?"], SLICE, n=2, encoder=text_encoder, exclude=["So cute puppy"]
    )
    assert [c.text for c in ranked] == ["what breed is it?"]


def test_extractive_comments_come_from_the_viewers_and_the_slice(text_encoder):
    comments = ["love the red ball", "first!", "love the red ball"]
    out = extractive_comments(SLICE + " The puppy jumps. It is sunny.", comments, n=3, encoder=text_encoder)
    pool = {*comments, *salient_phrases(SLICE + " The puppy jumps. It is sunny.")}
    assert len(out) == 3 and all(c.text in pool for c in out)
    assert len({c.text for c in out}) == 3


def test_bad_arguments_name_the_field(text_encoder):
    with pytest.raises(FieldError) as info:
        rank_comments(["a"], SLICE, n=0, encoder=text_encoder)
    assert info.value.field == "n"
    with pytest.raises(FieldError) as info:
        rank_comments(["a"], SLICE, n=1, encoder=text_encoder, diversity=1.5)
    assert info.value.field == "diversity"
    assert rank_comments(["", " "], SLICE, n=2, encoder=text_encoder) == []
