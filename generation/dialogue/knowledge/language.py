"""The language of a text by its script: "zh", "ja", "ko", "ru", "ar", "th", "hi", "el", "he", "en"; "" when unsure.

Our choices: the script decides (no model, no dictionary), which is what the answerer needs (the language of an
abstention, Chinese character n-grams for retrieval). Kana anywhere makes a Han text Japanese; Hangul makes it
Korean; Han alone is Chinese. Latin script is reported as "en" (the two languages the project evaluates are
English and Chinese; telling French from English by script is not possible). A text with fewer than
`MIN_LETTERS` letters, or whose leading script holds under half of its letters, is "" (unsure): the caller
falls back to the session's language. Nothing here changes the text.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

MIN_LETTERS = 2
"""Fewer letters than this (e.g. "ok", "?", "123") and the language is unsure."""

_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x3040, 0x30FF, "kana"),  # hiragana, katakana
    (0x31F0, 0x31FF, "kana"),  # katakana phonetic extensions
    (0xFF66, 0xFF9D, "kana"),  # half-width katakana
    (0x1100, 0x11FF, "hangul"),
    (0x3130, 0x318F, "hangul"),
    (0xAC00, 0xD7AF, "hangul"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xF900, 0xFAFF, "han"),
    (0x20000, 0x2FA1F, "han"),
    (0x0400, 0x04FF, "cyrillic"),
    (0x0600, 0x06FF, "arabic"),
    (0x0E00, 0x0E7F, "thai"),
    (0x0900, 0x097F, "devanagari"),
    (0x0370, 0x03FF, "greek"),
    (0x0590, 0x05FF, "hebrew"),
)
_LANGUAGE_OF_SCRIPT = {
    "cyrillic": "ru",
    "arabic": "ar",
    "thai": "th",
    "devanagari": "hi",
    "greek": "el",
    "hebrew": "he",
    "latin": "en",
}


def script_of(char: str) -> str:
    """The script of one character ("han", "kana", "hangul", "latin", ...), "" for digits, spaces, punctuation."""
    code = ord(char)
    for low, high, script in _SCRIPT_RANGES:
        if low <= code <= high:
            return script
    if char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
        return "latin"
    return ""


def is_cjk(char: str) -> bool:
    """Han, kana or Hangul: scripts written without spaces between words (retrieval uses character n-grams)."""
    return script_of(char) in ("han", "kana", "hangul")


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language by script, "" when unsure."""
    scripts = Counter(s for s in map(script_of, text) if s)
    letters = sum(scripts.values())
    if letters < MIN_LETTERS:
        return ""
    if scripts["kana"]:
        return "ja"
    if scripts["hangul"] >= scripts["han"] and scripts["hangul"]:
        return "ko"
    if scripts["han"]:
        # Han characters carry a word each: a Chinese question with a brand name in Latin letters is Chinese.
        return "zh" if scripts["han"] * 3 >= scripts["latin"] else "en"
    script, count = scripts.most_common(1)[0]
    if count * 2 < letters:
        return ""
    return _LANGUAGE_OF_SCRIPT.get(script, "")
