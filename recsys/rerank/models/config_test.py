import pytest

from recsys.rerank.models.config import TINY, RerankModelConfig


def test_round_trip_and_defaults():
    assert RerankModelConfig.from_dict(TINY.to_dict()) == TINY
    assert RerankModelConfig() == RerankModelConfig(d_model=64, heads=4, layers=2, max_slots=20, dropout=0.0)


def test_rejects_unknown_fields_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown"):
        RerankModelConfig.from_dict({**TINY.to_dict(), "width": 3})
    with pytest.raises(ValueError, match="multiple of heads"):
        RerankModelConfig(d_model=10, heads=4)


def test_student_layers_must_not_be_negative():
    with pytest.raises(ValueError, match="student_layers"):
        RerankModelConfig(student_layers=-1)
