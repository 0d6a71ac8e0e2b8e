"""Ranking quick comments (or candidate replies) for relevance to a live slice and for diversity.

    rank_comments(["so cute!", "so cute!!", "what breed is it?"], slice_text, n=2, encoder=text_encoder)

relevance = cosine(candidate, content) with the bundled MiniLM (vectors are L2-normalised, so a dot product);
candidates are picked greedily by maximal marginal relevance (Carbonell & Goldstein 1998):

    score = (1 - diversity) * relevance - diversity * max cosine to the candidates already picked

Our choices: empty candidates and exact repeats (case, spacing and punctuation ignored) are dropped before embedding; a
candidate whose cosine to one already picked is at least `DUPLICATE_SIMILARITY` is a near-duplicate and never
picked, however relevant (measured with MiniLM: "wow so cute" / "Wow, so cute!" 0.86, "what breed is it?" /
"which breed is this dog?" 0.90). The reported
`score` is the MMR score at the moment the candidate was picked, so scores fall down the list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from generation.dialogue.types import CommentCandidate
from libs.errors import FieldError

DEFAULT_DIVERSITY = 0.3
DUPLICATE_SIMILARITY = 0.85
# A salient phrase is a sentence of the slice short enough to post as a comment.
MAX_PHRASE_WORDS = 14
MIN_PHRASE_WORDS = 2
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")
_NOT_WORD = re.compile(r"[\W_]+")


def _distinct(texts: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for text in texts:
        clean = " ".join(text.split())
        key = _NOT_WORD.sub(" ", clean.casefold()).strip()
        if key and key not in seen:
            seen[key] = clean
    return list(seen.values())


def rank_comments(
    candidates: Sequence[str],
    content: str,
    *,
    n: int,
    encoder,
    diversity: float = DEFAULT_DIVERSITY,
    exclude: Sequence[str] = (),
) -> list[CommentCandidate]:
    """Up to `n` candidates, best first, by maximal marginal relevance to `content`. `exclude`: texts already
    chosen elsewhere; candidates that near-duplicate them are dropped and they count as picked for diversity."""
    if n < 1:
        raise FieldError("n", f"must be at least 1, got {n}")
    if not 0.0 <= diversity <= 1.0:
        raise FieldError("diversity", f"must be in [0, 1], got {diversity}")
    texts = _distinct(candidates)
    if not texts:
        return []
    picked_before = _distinct(exclude)
    vectors = np.asarray(encoder.encode([*texts, *picked_before]), dtype=np.float32)
    cand, before = vectors[: len(texts)], vectors[len(texts) :]
    relevance = cand @ encoder.encode([content])[0] if content.strip() else np.zeros(len(texts), np.float32)
    similarity = cand @ cand.T  # (C, C)
    redundancy = (cand @ before.T).max(axis=1) if len(before) else np.zeros(len(texts), np.float32)  # (C,)
    remaining = [i for i in range(len(texts)) if redundancy[i] < DUPLICATE_SIMILARITY]
    out: list[CommentCandidate] = []
    while remaining and len(out) < n:
        scores = (1.0 - diversity) * relevance[remaining] - diversity * redundancy[remaining]
        best = remaining[int(np.argmax(scores))]
        out.append(CommentCandidate(texts[best], float(relevance[best]), float(scores.max())))
        redundancy = np.maximum(redundancy, similarity[best])
        remaining = [i for i in remaining if i != best and redundancy[i] < DUPLICATE_SIMILARITY]
    return out


def salient_phrases(content: str) -> list[str]:
    """The content's sentences that are short enough to be a comment, in order."""
    sentences = (s.strip() for s in _SENTENCE_END.split(content))
    return [s for s in sentences if MIN_PHRASE_WORDS <= len(s.split()) <= MAX_PHRASE_WORDS]


def extractive_comments(
    content: str, comments: Sequence[str], *, n: int, encoder, diversity: float = DEFAULT_DIVERSITY
) -> list[CommentCandidate]:
    """The no-LM default: the viewers' own comments and the slice's salient phrases, ranked against the slice."""
    return rank_comments(
        [*comments, *salient_phrases(content)], content, n=n, encoder=encoder, diversity=diversity
    )


__all__ = [
    "DEFAULT_DIVERSITY",
    "DUPLICATE_SIMILARITY",
    "extractive_comments",
    "rank_comments",
    "salient_phrases",
]
