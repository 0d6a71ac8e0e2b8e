"""The knowledge Q&A evaluation: exact match, token F1 and abstention accuracy, per language, over seeds,
the hybrid answerer against a lexical-only (BM25) and a dense-only (MiniLM) baseline.

    report = knowledge_qa_eval(GroundedAnswerer(encoder), seeds=TEST_SEEDS, num_sessions=20)
    format_knowledge_table(report)                                   # the table `kmono dialogue eval` prints
    python -m generation.dialogue.knowledge.cli                      # the held-out test table
    python -m generation.dialogue.knowledge.cli --calibrate          # thresholds from the dev split
    python -m generation.dialogue.knowledge.cli --retrieval          # fusion choice: top-1 source on dev

Metrics (SQuAD's, with our choices where the set needs them):
- `em`, `f1` over answerable questions (an abstention scores 0). Answers and gold are normalised (lower case,
  punctuation and English articles dropped); F1 counts English words and, for Chinese/Japanese/Korean text,
  single characters (the usual character-level F1 for Chinese).
- `contains`: the gold value appears in the normalised answer (a clause that holds "99元" answers a price
  question, though its EM is 0).
- `citation`: the first citation names the gold source attachment (answerable questions).
- abstention ("not in the knowledge" is the positive class): `abstain_precision`, `abstain_recall`, and
  `abstain_accuracy` = the share of all questions where the answerer abstained exactly when it should.
Each metric is computed per seed (one seed = `num_sessions` sessions, half English half Chinese) and reported
as mean and standard deviation over seeds, for "all", "en" and "zh".

Measured (`python -m generation.dialogue.knowledge.cli`, test split, seeds 100-102, 12 sessions each,
168 questions per seed; thresholds calibrated on dev seeds 0-2; mean +- std over seeds):

    system  lang   em            f1            contains      citation      abst. prec.   abst. recall  abst. acc.
    hybrid  all    0.281+-0.028  0.393+-0.027  0.608+-0.025  0.717+-0.031  0.505+-0.053  0.722+-0.080  0.718+-0.044
    hybrid  en     0.372+-0.008  0.537+-0.012  0.772+-0.021  0.856+-0.021  0.668+-0.059  0.736+-0.098  0.821+-0.042
    hybrid  zh     0.189+-0.064  0.250+-0.066  0.444+-0.067  0.578+-0.044  0.403+-0.046  0.708+-0.068  0.615+-0.050
    lexical all    0.094+-0.032  0.164+-0.033  0.322+-0.034  0.456+-0.027  0.360+-0.028  0.764+-0.055  0.544+-0.035
    dense   all    0.194+-0.004  0.295+-0.005  0.458+-0.012  0.567+-0.018  0.429+-0.024  0.778+-0.071  0.641+-0.024

Read: the hybrid equals dense-only on English and lexical-only on Chinese (the fusion weights, see
retrieval.py) and so beats each baseline overall; EM is low where the answer is a clause of a sentence
(policies, the stream) rather than a fact's value, which `contains` shows; Chinese paraphrases that share no
character with the knowledge ("要多少钱" for "价格") are where it fails most, MiniLM being an English model.
"""

from __future__ import annotations

import copy
import logging
import re
import string
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from generation.dialogue.knowledge.answer import GroundedAnswer, GroundedAnswerer, can_answer
from generation.dialogue.knowledge.language import is_cjk
from generation.dialogue.knowledge.passages import passages_of
from generation.dialogue.knowledge.qa_set import DEV_SEEDS, LANGUAGES, TEST_SEEDS, QAItem, qa_sessions
from generation.dialogue.knowledge.retrieval import KnowledgeIndex, script_group

logger = logging.getLogger(__name__)

SYSTEMS = ("hybrid", "lexical", "dense")
METRICS = ("em", "f1", "contains", "citation", "abstain_precision", "abstain_recall", "abstain_accuracy")
DEFAULT_SESSIONS = 12
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | {c for c in "，。！？；：、（）《》“”‘’…·％"}


def normalize(text: str) -> str:
    """Lower case, NFKC (full-width to half-width), punctuation and English articles dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if c in _PUNCTUATION else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """F1 tokens: English words and single CJK characters of the normalised text."""
    tokens: list[str] = []
    for word in normalize(text).split():
        latin = ""
        for char in word:
            if is_cjk(char):
                if latin:
                    tokens.append(latin)
                    latin = ""
                tokens.append(char)
            else:
                latin += char
        if latin:
            tokens.append(latin)
    return tokens


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = answer_tokens(prediction), answer_tokens(gold)
    common = sum(min(pred.count(t), ref.count(t)) for t in set(ref))
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Outcome:
    item: QAItem
    answer: GroundedAnswer

    @property
    def cited(self) -> str:
        return self.answer.citations[0].source_id if self.answer.citations else ""


def run(answerer: GroundedAnswerer, split: str, seed: int, num_sessions: int) -> list[Outcome]:
    """The answerer's answer to every question of (split, seed)."""
    return [
        Outcome(item, answerer.answer(item.question, session.attachments, language=session.language))
        for session in qa_sessions(split, seed, num_sessions)
        for item in session.items
    ]


def metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """The metrics of the module docstring over a list of outcomes."""
    answerable = [o for o in outcomes if o.item.answerable]
    unanswerable = [o for o in outcomes if not o.item.answerable]
    abstained = [o for o in outcomes if o.answer.abstained]

    def answered(o: Outcome) -> str:
        return "" if o.answer.abstained else o.answer.text

    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else float("nan")

    return {
        "em": mean(float(normalize(answered(o)) == normalize(o.item.answer)) for o in answerable),
        "f1": mean(token_f1(answered(o), o.item.answer) for o in answerable),
        "contains": mean(
            float(bool(answered(o)) and normalize(o.item.answer) in normalize(answered(o)))
            for o in answerable
        ),
        "citation": mean(float(not o.answer.abstained and o.cited == o.item.source_id) for o in answerable),
        "abstain_precision": mean(float(not o.item.answerable) for o in abstained),
        "abstain_recall": mean(float(o.answer.abstained) for o in unanswerable),
        "abstain_accuracy": mean(float(o.answer.abstained != o.item.answerable) for o in outcomes),
        "questions": float(len(outcomes)),
    }


def knowledge_qa_eval(
    answerer: GroundedAnswerer,
    *,
    seeds: Sequence[int] = TEST_SEEDS,
    num_sessions: int = DEFAULT_SESSIONS,
    split: str = "test",
    baselines: bool = True,
) -> dict:
    """Per system ("hybrid" = `answerer`; "lexical", "dense" = baselines with their own dev-calibrated
    thresholds, sharing its encoder), per language ("all", "en", "zh"), per metric: mean, std over seeds and
    the per-seed values."""
    started = time.perf_counter()
    systems = {"hybrid": answerer}
    if baselines:
        systems |= {mode: GroundedAnswerer(answerer.encoder, retrieval=mode) for mode in SYSTEMS[1:]}
    results: dict[str, dict] = {}
    for name, system in systems.items():
        per_seed = {language: [] for language in ("all", *LANGUAGES)}
        for seed in seeds:
            outcomes = run(system, split, seed, num_sessions)
            per_seed["all"].append(metrics(outcomes))
            for language in LANGUAGES:
                per_seed[language].append(metrics([o for o in outcomes if o.item.language == language]))
        results[name] = {
            language: {
                metric: {
                    "mean": float(np.mean([row[metric] for row in rows])),
                    "std": float(np.std([row[metric] for row in rows])),
                    "seeds": [row[metric] for row in rows],
                }
                for metric in (*METRICS, "questions")
            }
            for language, rows in per_seed.items()
        }
        results[name]["thresholds"] = dict(system.thresholds)
    return {
        "split": split,
        "seeds": list(seeds),
        "num_sessions": num_sessions,
        "systems": results,
        "seconds": time.perf_counter() - started,
    }


def format_knowledge_table(report: dict) -> str:
    """One row per system and language: mean +- std over seeds of each metric."""
    header = f"{'system':<8}{'lang':<5}" + "".join(f"{m:>20}" for m in METRICS)
    lines = [
        f"knowledge Q&A, {report['split']} split, seeds {report['seeds']}, {report['num_sessions']} sessions each",
        header,
        "-" * len(header),
    ]
    for name, by_language in report["systems"].items():
        for language in ("all", *LANGUAGES):
            row = by_language[language]
            lines.append(
                f"{name:<8}{language:<5}"
                + "".join(f"{row[m]['mean']:>13.3f} +- {row[m]['std']:.3f}" for m in METRICS)
            )
    thresholds = "; ".join(
        f"{n} " + ", ".join(f"{g} {t:.3f}" for g, t in v["thresholds"].items())
        for n, v in report["systems"].items()
    )
    lines.append(f"abstention thresholds (dev-calibrated): {thresholds}; {report['seconds']:.0f} s")
    return "\n".join(lines)


def calibrate_thresholds(
    answerer: GroundedAnswerer, *, seeds: Sequence[int] = DEV_SEEDS, num_sessions: int = DEFAULT_SESSIONS
) -> dict[str, float]:
    """Per script group, the abstention threshold that maximises the dev split's mean question score (F1 when
    answered and answerable, 1 when abstaining on an unanswerable question, else 0). Reads the dev split only."""
    never = copy.copy(answerer)
    never.thresholds = dict.fromkeys(answerer.thresholds, float("-inf"))
    outcomes = [o for seed in seeds for o in run(never, "dev", seed, num_sessions)]
    return {
        group: _best_threshold([o for o in outcomes if script_group(o.item.question) == group])
        for group in answerer.thresholds
    }


def _best_threshold(outcomes: Sequence[Outcome]) -> float:
    confidence = np.array([o.answer.confidence for o in outcomes])
    if_answered = np.array(
        [token_f1(o.answer.text, o.item.answer) if o.item.answerable else 0.0 for o in outcomes]
    )
    if_abstained = np.array([0.0 if o.item.answerable else 1.0 for o in outcomes])
    levels = np.unique(confidence)
    candidates = np.concatenate([[levels[0] - 1e-6], (levels[1:] + levels[:-1]) / 2, [levels[-1] + 1e-6]])
    scores = [np.mean(np.where(confidence >= t, if_answered, if_abstained)) for t in candidates]
    best = int(np.argmax(scores))
    logger.info(
        "threshold %.4f scores %.4f on %d dev questions", candidates[best], scores[best], len(outcomes)
    )
    return float(candidates[best])


def retrieval_accuracy(
    encoder, *, weights: Sequence[float], seeds: Sequence[int], num_sessions: int
) -> dict[str, dict[str, float]]:
    """Top-1 accuracy (the best passage that may answer is the gold source's line holding the gold value) on
    the dev split's answerable questions, per language: dense, lexical, RRF and the weighted sum per weight."""
    sessions = [s for seed in seeds for s in qa_sessions("dev", seed, num_sessions)]
    configs = [("dense", None), ("lexical", None), ("rrf", None)] + [("hybrid", w) for w in weights]
    hits: dict[str, dict[str, list[bool]]] = {}
    for session in sessions:
        passages = [p for p in passages_of(session.attachments) if can_answer(p)]
        for mode, weight in configs:
            index = KnowledgeIndex(passages, encoder, mode=mode, dense_weight=weight)
            name = mode if weight is None else f"hybrid w={weight:g}"
            for item in session.items:
                if item.answerable:
                    top = index.search(item.question, k=1)[0][0]
                    ok = top.source_id == item.source_id and item.answer in top.text
                    hits.setdefault(name, {}).setdefault(item.language, []).append(ok)
    return {name: {lang: float(np.mean(v)) for lang, v in by_lang.items()} for name, by_lang in hits.items()}
