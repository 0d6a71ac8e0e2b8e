"""The evaluation's metrics on known answers, dev-only calibration, and the held-out bar.

Measured (see evaluate.py's docstring for the full run): BAR below.
"""

import math

import pytest

from generation.dialogue.knowledge import evaluate as evaluation
from generation.dialogue.knowledge.answer import GroundedAnswer, GroundedAnswerer
from generation.dialogue.knowledge.evaluate import (
    Outcome,
    metrics,
    normalize,
    token_f1,
)
from generation.dialogue.knowledge.qa_set import QAItem
from generation.dialogue.types import Citation


def test_normalisation_and_token_f1():
    assert normalize("The  Price: ２０ W!") == "price 20 w"
    assert token_f1("180 g", "180 g") == 1.0
    assert token_f1("about 180 g", "180 g") == pytest.approx(0.8)
    assert token_f1("99元", "今天只要99元") == pytest.approx(2 * (2 / 2) * (2 / 6) / (1 + 2 / 6))
    assert token_f1("", "x") == 0.0 and token_f1("y", "x") == 0.0


def _outcome(answerable, abstained, text="", source="", gold="", gold_source="s"):
    item = QAItem("q", "en", answerable, gold, gold_source if answerable else "")
    citations = () if abstained else (Citation(source),)
    return Outcome(item, GroundedAnswer(text, citations, abstained, 0.5))


def test_metrics_on_known_outcomes():
    outcomes = [
        _outcome(True, False, "180 g", "s", "180 g"),  # exact, cited
        _outcome(True, False, "about 180 g", "t", "180 g"),  # partial, wrong source
        _outcome(True, True, gold="3 days"),  # abstained on an answerable one
        _outcome(False, True),  # right abstention
        _outcome(False, False, "x", "s"),  # answered an unanswerable one
    ]
    m = metrics(outcomes)
    assert m["em"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx((1 + 0.8 + 0) / 3)
    assert m["contains"] == pytest.approx(2 / 3)
    assert m["citation"] == pytest.approx(1 / 3)
    assert m["abstain_precision"] == pytest.approx(1 / 2)
    assert m["abstain_recall"] == pytest.approx(1 / 2)
    assert m["abstain_accuracy"] == pytest.approx(3 / 5)  # answered, answered, abstained, abstained, answered
    assert math.isnan(metrics([_outcome(False, True)])["em"])


def test_calibration_reads_the_dev_split_only(encoder, monkeypatch):
    seen = []
    real = evaluation.qa_sessions

    def spy(split, seed, num_sessions):
        seen.append(split)
        return real(split, seed, num_sessions)

    monkeypatch.setattr(evaluation, "qa_sessions", spy)
    thresholds = evaluation.calibrate_thresholds(GroundedAnswerer(encoder), seeds=(0,), num_sessions=2)
    assert set(seen) == {"dev"}
    assert set(thresholds) == {"latin", "cjk"} and all(math.isfinite(t) for t in thresholds.values())
