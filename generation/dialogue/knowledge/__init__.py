"""Retrieval-grounded knowledge answers: passages from a session's attachments, hybrid retrieval (MiniLM +
BM25 / CJK character n-grams), the extractive cited abstaining answerer (the embedded default), and the
bilingual knowledge Q&A set with its evaluation."""

from generation.dialogue.knowledge.answer import GroundedAnswer, GroundedAnswerer
from generation.dialogue.knowledge.language import detect_language
from generation.dialogue.knowledge.passages import Passage, passages_of, split_sentences
from generation.dialogue.knowledge.retrieval import KnowledgeIndex

__all__ = [
    "GroundedAnswer",
    "GroundedAnswerer",
    "KnowledgeIndex",
    "Passage",
    "detect_language",
    "passages_of",
    "split_sentences",
]
