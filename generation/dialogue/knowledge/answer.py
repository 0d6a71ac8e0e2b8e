"""The embedded default for knowledge and customer-service questions: extractive, cited, abstaining.

    answerer = GroundedAnswerer(TextEncoder.from_pretrained())
    reply = answerer.answer("How heavy is the Aurora X2?", session.all_attachments())
    reply.text, reply.citations, reply.abstained, reply.confidence

The answer is a span of the best passage found by hybrid retrieval (`retrieval.py`):
- a "key: value" fact answers with its value ("180 g");
- a FAQ pair with its answer part (whole: "Yes, students get 15% off", not just "Yes");
- any other sentence with its clause (split at , ， ; ； : ： 、) that best matches the question, the shortest
  on a tie (a streamer's "the cream is 99 yuan today, and shipping is free" answers a price question with its
  first clause).
The reply cites the passage's attachment (its id, title, the passage as snippet, uri, and a transcript
sentence's times). Viewer comments are never answers (our choice: they are opinions and questions, not the
seller's or the streamer's word; one that repeats the user's question would otherwise echo it back), though
they stay retrievable for LM prompts (`passages_for`).

Abstention: the best passage is ranked with its title in front (that finds the product a question names), but
a question about the Nimbus kettle's warranty matches every line of the Nimbus sheet by name; only the passage's
own words say whether the sheet holds a warranty. So the confidence is the mean (`TITLED_SHARE`) of the fused
score with the title and of the fused score of the text alone (dev split, best mean question score: text alone
0.531 en / 0.335 zh, with the title 0.561 / 0.409, the mean 0.598 / 0.418). When the confidence is below the
threshold for the question's script (`threshold` when given, else the calibrated one), the reply says, in the
question's language (or `language`, or English), that the provided information does not hold the answer. Thresholds are
calibrated on the Q&A set's dev split only (`python -m generation.dialogue.knowledge.cli --calibrate`,
which writes nothing: its figures are copied into `CALIBRATED_THRESHOLDS` with the command beside them); the
held-out test split never sees it. Each retrieval mode (the lexical-only and dense-only baselines too) has its
own calibrated threshold, so the comparison is fair.

Indexes are cached per set of passages (a session asks many questions over the same attachments): the LRU holds
`cache_size` indexes.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from generation.dialogue.knowledge.language import detect_language
from generation.dialogue.knowledge.passages import (
    COMMENT,
    FACT,
    FAQ,
    Passage,
    fact_parts,
    faq_parts,
    passages_of,
)
from generation.dialogue.knowledge.retrieval import KnowledgeIndex, script_group, terms
from generation.dialogue.types import Attachment, Citation

logger = logging.getLogger(__name__)

CALIBRATED_THRESHOLDS = {
    "hybrid": {"latin": 0.406, "cjk": 0.096},
    "dense": {"latin": 0.451, "cjk": 0.744},
    "lexical": {"latin": 0.206, "cjk": 0.096},
}
"""Per retrieval mode and query script, the abstention threshold that maximised the dev split's mean score (see
the docstring), from `python -m generation.dialogue.knowledge.cli --calibrate` (dev seeds 0-2, 12 sessions
each). Per script because the fused score weighs dense and lexical differently by script."""
TITLED_SHARE = 0.5
"""The confidence's share of the title-aware score; the rest is the score of the passage's own text."""
NOT_IN_KNOWLEDGE = {
    "en": "The provided information does not say.",
    "zh": "提供的资料里没有这个信息。",
    "ja": "提供された情報には記載がありません。",
    "ko": "제공된 정보에는 그 내용이 없습니다.",
}
"""What an abstention says, by language; other languages get the English sentence."""
_CLAUSE_END = re.compile(r"(?<=[,，;；:：、])\s*")
_TRAILING = " \t.。!！?？;；,，"


@dataclass(frozen=True)
class GroundedAnswer:
    text: str
    citations: tuple[Citation, ...]
    abstained: bool
    confidence: float


class GroundedAnswerer:
    """Answers questions from attachments' passages; see the module docstring."""

    def __init__(
        self,
        encoder,
        *,
        threshold: float | None = None,
        retrieval: str = "hybrid",
        dense_weight: float | None = None,
        cache_size: int = 16,
    ) -> None:
        if threshold is None and retrieval not in CALIBRATED_THRESHOLDS:
            raise ValueError(f"retrieval: calibrated for {sorted(CALIBRATED_THRESHOLDS)}, got {retrieval!r}")
        self.encoder = encoder
        self.thresholds = (
            dict(CALIBRATED_THRESHOLDS[retrieval])
            if threshold is None
            else dict.fromkeys(CALIBRATED_THRESHOLDS["hybrid"], threshold)
        )
        self.retrieval = retrieval
        self.dense_weight = dense_weight
        self.cache_size = cache_size
        self._indexes: OrderedDict[tuple[Passage, ...], KnowledgeIndex] = OrderedDict()

    def threshold_for(self, question: str) -> float:
        """The abstention threshold for the question's script."""
        return self.thresholds[script_group(question)]

    def index(self, attachments: Sequence[Attachment]) -> KnowledgeIndex:
        """The (cached) index of the attachments' passages."""
        key = tuple(passages_of(attachments))
        index = self._indexes.get(key)
        if index is None:
            index = KnowledgeIndex(key, self.encoder, mode=self.retrieval, dense_weight=self.dense_weight)
            self._indexes[key] = index
            while len(self._indexes) > self.cache_size:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(key)
        return index

    def passages_for(
        self, question: str, attachments: Sequence[Attachment], k: int = 3
    ) -> list[tuple[Passage, float]]:
        """The k passages that best match the question, for an LM prompt (RAG)."""
        return self.index(attachments).search(question, k)

    def answer(
        self, question: str, attachments: Sequence[Attachment], *, language: str = ""
    ) -> GroundedAnswer:
        """The extracted, cited answer, or an abstention in the question's language."""
        index = self.index(attachments)
        hits = [(p, s) for p, s in index.search(question, k=len(index.passages)) if can_answer(p)]
        confidence = 0.0
        if hits:
            passage, titled = hits[0]
            own_words = float(index.scores(question, titled=False)[index.passages.index(passage)])
            confidence = TITLED_SHARE * titled + (1 - TITLED_SHARE) * own_words
        if not hits or confidence < self.threshold_for(question):
            reply_language = detect_language(question) or language or "en"
            text = NOT_IN_KNOWLEDGE.get(reply_language, NOT_IN_KNOWLEDGE["en"])
            return GroundedAnswer(text=text, citations=(), abstained=True, confidence=confidence)
        passage = hits[0][0]
        citation = Citation(
            source_id=passage.source_id,
            title=passage.title,
            snippet=passage.text,
            uri=passage.uri,
            start=passage.start,
            end=passage.end,
        )
        return GroundedAnswer(
            text=self.span(question, passage), citations=(citation,), abstained=False, confidence=confidence
        )

    def span(self, question: str, passage: Passage) -> str:
        """The part of the passage that answers: a fact's value, a FAQ's answer, or the best clause."""
        if passage.kind == FACT and (parts := fact_parts(passage.text)) is not None:
            return parts[1].strip(_TRAILING) or parts[1]
        text = passage.text
        if passage.kind == FAQ and (parts := faq_parts(text)) is not None:
            return parts[1].strip(_TRAILING) or parts[1]
        clauses = [c.strip(_TRAILING) for c in _CLAUSE_END.split(text)]
        clauses = [c for c in clauses if c]
        if len(clauses) <= 1:
            return text.strip(_TRAILING) or text
        return clauses[int(np.argmax(self._clause_scores(question, clauses)))]

    def _clause_scores(self, question: str, clauses: list[str]) -> np.ndarray:
        """Term overlap with the question plus MiniLM cosine, minus a hair per character (shortest wins ties)."""
        question_terms = set(terms(question))
        overlap = np.array(
            [len(question_terms & set(terms(c))) / max(len(question_terms), 1) for c in clauses]
        )
        vectors = np.asarray(self.encoder.encode([question, *clauses]), dtype=np.float32)
        cosine = vectors[1:] @ vectors[0]
        return overlap + cosine - 1e-4 * np.array([len(c) for c in clauses])


def can_answer(passage: Passage) -> bool:
    """Whether the extractive answerer may cut an answer from this passage (not from viewer comments)."""
    return passage.kind != COMMENT
