"""Prompt words a model does not know: found, and said to the user, never silently dropped.

    unknown_words(pipe.tokenizer, "a purple circle")      # ["purple"] for the shapes default
    known_content_words(pipe.tokenizer)                   # ["red", "green", ..., "circle", ...] (small vocabularies)
    unknown_words_warning(["purple"], known)              # "unknown words ignored by this model: purple (known: ...)"
    check_prompt(pipe.tokenizer, prompt, negative_prompt, max_tokens=16)   # all of it, for an engine's job

A word is unknown when the model's own tokenizer turns it into its unknown token (the text encoder then sees
[UNK], i.e. nothing of the word). The shapes-world default's word-level tokenizer knows a dozen words, so
"purple" or "crimson" are unknown; a sub-word tokenizer (T5) spells ordinary words out of pieces and reports
none. No torch here: only the tokenizer is used.

Our choices (the issue is silent):
- Words are runs of letters and digits (Unicode-aware), an apostrophe joining runs ("don't"); punctuation,
  symbols and underscores separate words and are never reported (the shapes tokenizer maps "!" to [UNK] too,
  but a user did not mean "!" as a word). Each word is tokenized alone, so the answer does not depend on its
  neighbours; words are reported once, in prompt order, as the user spelled them first (duplicates differing
  only in case are one word, as the lower-casing tokenizers see them).
- A vocabulary is small when it has at most `SMALL_VOCABULARY` entries: then the warning lists the model's known
  content words (whole-word entries of two or more letters, not special tokens nor `FUNCTION_WORDS`), which
  teaches the user what to write; a large vocabulary's warning names the unknown words only.
- `check_prompt` also names the text past the model's window (`max_tokens`, special tokens included): those
  words are dropped too, silently, by the pipeline's truncation.
- A warning names at most `MAX_LISTED` words, each cut to `MAX_WORD_CHARS` ("... and N more"): a hostile
  prompt cannot make it huge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SMALL_VOCABULARY = 256
"""Vocabularies of at most this many entries are listed in the warning (the shapes default has about 20)."""
MAX_LISTED = 32
"""Unknown (and known) words named in one warning; the rest are counted."""
MAX_WORD_CHARS = 40
"""A longer word is cut to this many characters in a warning (with "...")."""
FUNCTION_WORDS = frozenset(
    "a an the and or of to in on at with by for from as is are be it its this that".split()
)
"""Words that carry no content of their own: known or not, the warning does not offer them."""
WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
"""A word: letters and digits (any script), apostrophes inside."""
WORD_START_MARKERS = ("\u2581", "\u0120")
"""How sub-word vocabularies mark a piece that starts a word (SentencePiece "▁", byte-level BPE "Ġ")."""
CONTINUATION_MARKER = "##"
"""How WordPiece marks a piece that continues a word (not a word of its own)."""


def prompt_words(prompt: str) -> list[str]:
    """The words of `prompt` in order, each once (exact spelling)."""
    return list(dict.fromkeys(WORD.findall(prompt)))


def unknown_words(tokenizer: Any, prompt: str) -> list[str]:
    """Words of `prompt` that `tokenizer` maps (wholly or in part) to its unknown token, in prompt order, once
    each (case-insensitively); [] for a tokenizer without an unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    words = prompt_words(prompt)
    if unk is None or not words:
        return []
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    unknown: dict[str, str] = {}  # casefolded -> the first spelling
    for word, word_ids in zip(words, ids, strict=True):
        if unk in word_ids:
            unknown.setdefault(word.casefold(), word)
    return list(unknown.values())


def known_content_words(tokenizer: Any, max_vocabulary: int = SMALL_VOCABULARY) -> list[str] | None:
    """The content words of a small vocabulary in id order; None when it has more than `max_vocabulary` entries
    (too many to list)."""
    vocab = tokenizer.get_vocab()
    if len(vocab) > max_vocabulary:
        return None
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    words = []
    for token, _ in sorted(vocab.items(), key=lambda item: item[1]):
        if token in special or token.startswith(CONTINUATION_MARKER):
            continue
        word = token
        for marker in WORD_START_MARKERS:
            word = word.removeprefix(marker)
        if len(word) >= 2 and word.isalpha() and word.casefold() not in FUNCTION_WORDS:
            words.append(word)
    return list(dict.fromkeys(words))


def _listing(words: Sequence[str]) -> str:
    listed = ", ".join(
        w if len(w) <= MAX_WORD_CHARS else w[:MAX_WORD_CHARS] + "..." for w in words[:MAX_LISTED]
    )
    if len(words) > MAX_LISTED:
        listed += f" ... and {len(words) - MAX_LISTED} more"
    return listed


def unknown_words_warning(
    unknown: Sequence[str], known: Iterable[str] | None = None, *, where: str = ""
) -> str | None:
    """One line for the user naming `unknown` (None when there are none), and `known`, the model's content
    words, when given; `where` names the text ("the negative prompt"), empty for the prompt."""
    if not unknown:
        return None
    place = f" in {where}" if where else ""
    line = f"unknown words{place} ignored by this model: {_listing(unknown)}"
    known = list(known or ())
    if known:
        line += f" (known: {_listing(known)})"
    return line


def vocabulary_warning(tokenizer: Any, prompt: str, *, where: str = "") -> tuple[list[str], str | None]:
    """`prompt`'s unknown words and the warning that names them (None when every word is known)."""
    unknown = unknown_words(tokenizer, prompt)
    if not unknown:
        return [], None
    return unknown, unknown_words_warning(unknown, known_content_words(tokenizer), where=where)


@dataclass(frozen=True)
class PromptCheck:
    """What a model will not read of a job's text."""

    unknown_words: tuple[str, ...] = ()
    """Words of the prompt the model's tokenizer maps to its unknown token (the model ignores them)."""
    warnings: tuple[str, ...] = ()
    """One line each for the user: unknown words (prompt, negative prompt), text past the model's window."""


def text_window_warning(tokenizer: Any, prompt: str, max_tokens: int) -> str | None:
    """A line naming the text of `prompt` past the first `max_tokens` tokens (special tokens included), which
    the model never reads; None when it all fits."""
    specials = tokenizer.num_special_tokens_to_add()
    offsets = None
    if getattr(tokenizer, "is_fast", False):  # one pass gives the count and where the cut falls
        encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        count = len(offsets) + specials
    else:
        count = len(tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"])
    if count <= max_tokens:
        return None
    line = f"the prompt is {count} tokens; this model reads the first {max_tokens}"
    kept = max(0, max_tokens - specials)
    if offsets is not None and kept < len(offsets):
        ignored = " ".join(prompt[offsets[kept][0] : offsets[kept][0] + 4 * MAX_WORD_CHARS].split())
        if len(ignored) > 2 * MAX_WORD_CHARS:
            ignored = ignored[: 2 * MAX_WORD_CHARS] + "..."
        line += f", so it ignores: {ignored!r}"
    return line


def check_prompt(
    tokenizer: Any, prompt: str, negative_prompt: str = "", max_tokens: int | None = None
) -> PromptCheck:
    """The unknown words of `prompt`, and every warning about the text: unknown words of the prompt and of the
    negative prompt, the prompt's text past `max_tokens` tokens (the model's window; None: not checked)."""
    unknown, warning = vocabulary_warning(tokenizer, prompt)
    _, negative = vocabulary_warning(tokenizer, negative_prompt, where="the negative prompt")
    window = text_window_warning(tokenizer, prompt, max_tokens) if max_tokens else None
    warnings = tuple(line for line in (warning, negative, window) if line is not None)
    return PromptCheck(tuple(unknown), warnings)
