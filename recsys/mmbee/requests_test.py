import numpy as np
import pytest

from libs.errors import FieldError
from recsys.mmbee.requests import CandidateInput, RankRequest, RankSpec, check_request

SPEC = RankSpec(segment_seconds=10, content_dim=16, user_numeric=("log_gifts",), author_numeric=("gift_rate",),
                max_candidates=5)  # fmt: skip


def request(*candidates, **changes):
    candidates = candidates or (CandidateInput("s1", "a1"), CandidateInput("s2", "a2"))
    return RankRequest(**{"user_id": "u1", "candidates": tuple(candidates), **changes})


def field_of(bad: RankRequest) -> str:
    with pytest.raises(FieldError) as error:
        check_request(bad, SPEC)
    return error.value.field


def test_a_well_formed_request_passes_with_unknown_ids():
    check_request(request(CandidateInput("never-seen", "nobody")), SPEC)  # cold start, not an error


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (request(user_id=""), "user_id"),
        (RankRequest("u1", ()), "candidates"),
        (request(*[CandidateInput(f"s{i}", "a1") for i in range(6)]), "candidates"),
        (request(CandidateInput("s1", "a1"), CandidateInput("s1", "a2")), "candidates[1].stream_id"),
        (request(CandidateInput("", "a1")), "candidates[0].stream_id"),
        (request(CandidateInput("s1", "")), "candidates[0].author_id"),
        (request(CandidateInput("s" * 200, "a1")), "candidates[0].stream_id"),
        (request(top_k=-1), "top_k"),
        (request(user_numeric={"log_gifts": float("nan")}), 'user_features.numeric_features["log_gifts"]'),
        (request(user_numeric={"typo": 1.0}), 'user_features.numeric_features["typo"]'),
        (request(user_embeddings={"visual": np.zeros((10, 16))}), 'user_features.embeddings["visual"]'),
        (request(CandidateInput("s1", "a1", numeric={"gift_rate": float("inf")})),
         'candidates[0].features.numeric_features["gift_rate"]'),
        (request(CandidateInput("s1", "a1", embeddings={"visual": np.zeros((10, 15))})),
         'candidates[0].features.embeddings["visual"]'),
        (request(CandidateInput("s1", "a1", embeddings={"visual": np.full((10, 16), np.nan)})),
         'candidates[0].features.embeddings["visual"]'),
        (request(CandidateInput("s1", "a1", embeddings={"audio": np.zeros((10, 16))})),
         'candidates[0].features.embeddings["audio"]'),
        (request(CandidateInput("s1", "a1", categorical={"city": "x"})),
         'candidates[0].features.categorical_features["city"]'),
    ],
)  # fmt: skip
def test_every_bad_input_names_its_request_field(bad, field):
    assert field_of(bad) == field


def test_the_message_says_how_to_fix():
    with pytest.raises(FieldError, match="split them into several requests"):
        check_request(request(*[CandidateInput(f"s{i}", "a1") for i in range(6)]), SPEC)
    with pytest.raises(FieldError, match=r"shape \[10, 16\]"):
        check_request(request(CandidateInput("s1", "a1", embeddings={"visual": np.zeros((3, 16))})), SPEC)
