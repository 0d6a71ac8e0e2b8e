"""Embeddings convert through `float_tensor` (same arrays, float32 ones as read-only views, the same
INVALID_ARGUMENT field and message at the request's field path); the response is the same message however it is
built."""

import numpy as np
import pytest
from google.rpc import error_details_pb2
from kmono.common.v1 import tensor_pb2
from kmono.rank.v1 import rank_pb2

from libs.serving import InvalidArgumentError, find_detail
from libs.serving.errors import status_from_exception
from libs.serving.inputs import MAX_TENSOR_ELEMENTS, float_tensor, to_float_tensor
from recsys.mmbee.requests import RankResult, ScoredStream
from services.rank.convert import rank_request, rank_response

F32 = tensor_pb2.DATA_TYPE_FLOAT32


def tensor(dtype: int, dims: list[int], data: bytes) -> tensor_pb2.Tensor:
    return tensor_pb2.Tensor(dtype=dtype, dims=dims, data=data)


def request_with(
    name: str, value: tensor_pb2.Tensor, *, on_user: bool = False
) -> rank_pb2.RankCandidatesRequest:
    request = rank_pb2.RankCandidatesRequest(user_id="u1")
    request.candidates.add(stream_id="s0", author_id="a0")
    candidate = request.candidates.add(stream_id="s1", author_id="a1")
    target = request.user_features if on_user else candidate.features
    target.embeddings[name].CopyFrom(value)
    return request


def violation(error: InvalidArgumentError) -> tuple[str, str]:
    detail = find_detail(status_from_exception(error), error_details_pb2.BadRequest)
    return detail.field_violations[0].field, detail.field_violations[0].description


def test_a_well_formed_float32_tensor_is_the_array_float_tensor_gives_read_only():
    segment = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    domain = rank_request(request_with("visual", to_float_tensor(segment)))
    array = domain.candidates[1].embeddings["visual"]
    expected = float_tensor(to_float_tensor(segment), "x")
    assert array.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(array, expected)
    assert not array.flags.writeable  # a view of the request's bytes: the engine only reads it
    assert domain.candidates[0].embeddings == {}


def test_embeddings_keep_name_order():
    request = request_with("visual", to_float_tensor(np.zeros((2, 3), np.float32)))
    for name in ("comments", "speech"):
        request.candidates[1].features.embeddings[name].CopyFrom(to_float_tensor(np.ones((2, 3), np.float32)))
    assert list(rank_request(request).candidates[1].embeddings) == ["comments", "speech", "visual"]


@pytest.mark.parametrize(
    "value",
    [
        tensor(tensor_pb2.DATA_TYPE_FLOAT16, [2, 3], np.arange(6, dtype="<f2").tobytes()),
        tensor(tensor_pb2.DATA_TYPE_FLOAT64, [3], np.arange(3, dtype="<f8").tobytes()),
        tensor(F32, [2, 2, 2], np.arange(8, dtype="<f4").tobytes()),
        tensor(F32, [5], np.arange(5, dtype="<f4").tobytes()),
    ],
    ids=["float16", "float64", "float32-3d", "float32-1d"],
)
def test_other_float_types_and_ranks_are_converted_by_float_tensor(value):
    array = rank_request(request_with("speech", value)).candidates[1].embeddings["speech"]
    np.testing.assert_array_equal(array, float_tensor(value, "x"))
    assert array.dtype == np.float32


@pytest.mark.parametrize(
    "value",
    [
        tensor(tensor_pb2.DATA_TYPE_INT32, [2], b"\0" * 8),
        tensor(F32, [], b""),
        tensor(F32, [2, 0], b""),
        tensor(F32, [-1, 2], b"\0" * 8),
        tensor(F32, [10, 16], b"\0" * 12),
        tensor(F32, [0, 2], b""),
        tensor(F32, [MAX_TENSOR_ELEMENTS + 1], b"\0" * 4 * (MAX_TENSOR_ELEMENTS + 1)),
        tensor(F32, [1025, 1024], b"\0" * 4 * 1025 * 1024),
    ],
    ids=[
        "int32",
        "no-dims",
        "zero-dim",
        "negative-dim",
        "short-data",
        "zero-rows",
        "too-many-elements",
        "too-many-elements-2d",
    ],  # fmt: skip
)
@pytest.mark.parametrize("on_user", [False, True], ids=["candidate", "user"])
def test_malformed_tensors_get_float_tensors_error_at_the_request_field(value, on_user):
    field = 'user_features.embeddings["visual"]' if on_user else 'candidates[1].features.embeddings["visual"]'
    with pytest.raises(InvalidArgumentError) as expected:
        float_tensor(value, field)
    with pytest.raises(InvalidArgumentError) as raised:
        rank_request(request_with("visual", value, on_user=on_user))
    assert violation(raised.value) == violation(expected.value)
    assert violation(raised.value)[0].startswith(field)


def test_the_response_lists_every_scored_candidate_in_order():
    scored = tuple(ScoredStream(f"s{i}", f"a{i}", 1 / (i + 2), i + 1) for i in range(3))
    response = rank_response(RankResult(scored, "mmbee-1", "snap-1"))
    assert response == rank_pb2.RankCandidatesResponse(
        scored_candidates=[
            rank_pb2.ScoredCandidate(
                stream_id=s.stream_id, author_id=s.author_id, gtr_score=s.score, rank=s.rank
            )
            for s in scored
        ],
        model_version="mmbee-1",
    )
