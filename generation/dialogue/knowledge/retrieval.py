"""Hybrid retrieval over passages: dense MiniLM cosine and a lexical BM25, fused by a weighted sum.

    index = KnowledgeIndex(passages_of(attachments), encoder)
    for passage, score in index.search("how heavy is the Aurora X2?", k=3): ...

- Dense: cosine of the bundled all-MiniLM-L6-v2 vectors of the query and of each passage's `searchable()` text
  (the title in front). MiniLM is an English model: its vocabulary holds Chinese characters one by one, so it
  is weak on Chinese and Japanese text, which is why the lexical side reads characters there.
- Lexical: BM25 (k1 = 1.2, b = 0.75) over terms: lower-cased Latin/digit words with a light plural strip
  ("returns" = "return") and, in runs of Han/kana/Hangul, character unigrams and bigrams (no segmenter needed;
  bigrams are the standard CJK indexing unit, unigrams keep paraphrases that share one character). A short stop
  list drops function and question words. BM25 is divided by its upper bound for the query (every query term
  at saturation: sum of idf·(k1+1)), so the lexical score lies in [0, 1] and means the same across queries,
  which the answerer's abstention threshold needs.
- Fusion: a weighted sum, `DENSE_WEIGHTS` by the query's script (measured on the dev split only; the figures
  are the dev "mean question score" the abstention threshold is calibrated against, 36 sessions, 252
  questions per language: F1 when answered, 1 for a right abstention):
      English  dense weight 0.6: 0.536, 0.8: 0.549, 0.9: 0.561, 1.0 (dense only): 0.557, lexical only: 0.316
      Chinese  dense weight 0.0 (lexical only): 0.409, 0.1: 0.395, 0.2: 0.398, 1.0 (dense only): 0.294
  So English leans on MiniLM (0.9) and Chinese on character n-grams (0.0: MiniLM's Chinese vectors did not
  add anything measurable). Reciprocal rank fusion ranked worse (top-1 right passage, dev seeds 0-1, 8 sessions:
  RRF 0.58 en / 0.50 zh against 0.86 / 0.61 for the weighted sum) and gives no score that is comparable
  across queries, which the answerer's abstention needs; it is kept as `mode="rrf"` for the measurement.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from generation.dialogue.knowledge.language import detect_language, is_cjk
from generation.dialogue.knowledge.passages import Passage

BM25_K1 = 1.2
BM25_B = 0.75
DENSE_WEIGHTS = {"latin": 0.9, "cjk": 0.0}
"""Weight of the dense cosine in the fused score by the query's script (the lexical score takes the rest):
MiniLM reads English paraphrases well and Chinese poorly, character n-grams the other way round (measured, see
the module docstring)."""
RRF_K = 60
RETRIEVAL_MODES = ("hybrid", "dense", "lexical", "rrf")

STOPWORDS = frozenset(
    "a an the is are was were be been do does did of to in on for at by with and or it its this that these those"
    " what which who whom whose when where why how much many long i you we my your our me us can could will"
    " would should there any some tell please about have has".split()
    + list("的了吗呢吧啊是么")
    + ["什么", "多少", "怎么", "哪个", "哪里", "请问", "一下", "这个", "那个", "这款", "有没有", "可以"]
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def terms(text: str) -> list[str]:
    """Lexical terms: Latin/digit words (lower-cased, plural-stripped) and CJK character uni- and bigrams, stop
    words dropped (on both sides, so documents and queries count the same terms)."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        run: list[str] = []
        latin: list[str] = []
        for char in word + " ":
            if is_cjk(char):
                if latin:
                    out += _latin_terms("".join(latin))
                    latin = []
                run.append(char)
            else:
                if run:
                    out += _cjk_terms(run)
                    run = []
                if char != " ":
                    latin.append(char)
        if latin:
            out += _latin_terms("".join(latin))
    return out


def _latin_terms(word: str) -> list[str]:
    return [] if word in STOPWORDS else [_stem(word)]


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss") and not word.isdigit():
        return word[:-1]
    return word


def _cjk_terms(run: list[str]) -> list[str]:
    chars = [c for c in run if c not in STOPWORDS]
    bigrams = ["".join(run[i : i + 2]) for i in range(len(run) - 1)]
    return chars + [b for b in bigrams if b not in STOPWORDS]


class BM25:
    """Okapi BM25 over a fixed list of documents' terms, scores normalised to [0, 1] per query."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        self.tfs = [Counter(doc) for doc in documents]
        self.lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        self.mean_length = float(self.lengths.mean()) if len(documents) else 0.0
        df = Counter(term for tf in self.tfs for term in tf)
        n = len(documents)
        # The "plus 1" idf of Lucene: always positive, so a term in every document still counts a little.
        self.idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in df.items()}
        self.unseen_idf = math.log(1 + (n + 0.5) / 0.5)

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """BM25 of each document divided by the query's upper bound (all terms saturated): values in [0, 1]."""
        scores = np.zeros(len(self.tfs))
        unique = Counter(query_terms)
        bound = sum(q * self.idf.get(t, self.unseen_idf) * (BM25_K1 + 1) for t, q in unique.items())
        if not self.tfs or bound == 0:
            return scores
        norm = BM25_K1 * (1 - BM25_B + BM25_B * self.lengths / max(self.mean_length, 1e-9))
        for term, q in unique.items():
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([doc.get(term, 0) for doc in self.tfs], dtype=np.float64)
            scores += q * idf * tf * (BM25_K1 + 1) / (tf + norm)
        return scores / bound


def script_group(query: str) -> str:
    """ "cjk" for a Chinese, Japanese or Korean query, else "latin" (the groups fusion weights differ by)."""
    return "cjk" if detect_language(query) in ("zh", "ja", "ko") else "latin"


def dense_weight_for(query: str) -> float:
    """The dense side's weight for a query, by its script group."""
    return DENSE_WEIGHTS[script_group(query)]


class KnowledgeIndex:
    """Passages with their MiniLM vectors and BM25 statistics; `search` ranks them for a query.

    `mode`: "hybrid" (default, weighted sum), "dense" or "lexical" (the baselines), "rrf" (reciprocal rank
    fusion, kept for the measurement; its score is not comparable across queries)."""

    def __init__(
        self,
        passages: Sequence[Passage],
        encoder,
        *,
        mode: str = "hybrid",
        dense_weight: float | None = None,
    ) -> None:
        if mode not in RETRIEVAL_MODES:
            raise ValueError(f"mode: expected one of {RETRIEVAL_MODES}, got {mode!r}")
        self.passages = list(passages)
        self.encoder = encoder
        self.mode = mode
        self.dense_weight = dense_weight
        texts = [p.searchable() for p in self.passages]
        if texts and mode != "lexical":
            # Two vectors per passage, with and without the title: the title finds a product's facts, but it
            # drowns a short stream sentence ("the lucky draw starts at 9") in the stream's name.
            vectors = np.asarray(encoder.encode(texts + [p.text for p in self.passages]), dtype=np.float32)
            self.vectors = vectors.reshape(2, len(texts), -1)
        else:
            self.vectors = np.zeros((2, len(texts), 0), np.float32)
        self.bm25 = BM25([terms(t) for t in texts])
        self.bm25_text = BM25([terms(p.text) for p in self.passages])
        self._last_query: tuple[str, np.ndarray] | None = None

    def dense_scores(self, query: str, *, titled: bool = True) -> np.ndarray:
        if self._last_query is None or self._last_query[0] != query:  # scored twice per answer: encode once
            self._last_query = (query, np.asarray(self.encoder.encode([query]), dtype=np.float32)[0])
        query_vector = self._last_query[1]
        cosines = self.vectors @ query_vector  # (2, passages): with the title, text alone
        return cosines.max(axis=0) if titled else cosines[1]

    def lexical_scores(self, query: str, *, titled: bool = True) -> np.ndarray:
        return (self.bm25 if titled else self.bm25_text).scores(terms(query))

    def scores(self, query: str, *, titled: bool = True) -> np.ndarray:
        """The fused score of every passage for the query (higher is better). `titled=False` scores the
        passages' own text only: the evidence that a passage answers, not that it is about the product named."""
        if self.mode == "lexical":
            return self.lexical_scores(query, titled=titled)
        dense = self.dense_scores(query, titled=titled)
        if self.mode == "dense":
            return dense
        lexical = self.lexical_scores(query, titled=titled)
        if self.mode == "rrf":
            return _rank_fusion([dense, lexical])
        weight = self.dense_weight if self.dense_weight is not None else dense_weight_for(query)
        return weight * dense + (1 - weight) * lexical

    def search(self, query: str, k: int = 3) -> list[tuple[Passage, float]]:
        """The k best passages with their scores, best first (ties keep the passages' order)."""
        if not self.passages or k <= 0:
            return []
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.passages[i], float(scores[i])) for i in order]


def _rank_fusion(score_lists: Sequence[np.ndarray]) -> np.ndarray:
    fused = np.zeros_like(score_lists[0], dtype=np.float64)
    for scores in score_lists:
        ranks = np.empty(len(scores), dtype=np.int64)
        ranks[np.argsort(-scores, kind="stable")] = np.arange(len(scores))
        fused += 1.0 / (RRF_K + 1 + ranks)
    return fused
