"""RankCandidates proto <-> the engine's domain request and result (recsys.mmbee.requests). Only shapes and
types are read here; every rule about values lives in `recsys.mmbee.requests.check_request`."""

from __future__ import annotations

from kmono.common.v1 import features_pb2
from kmono.rank.v1 import rank_pb2

from libs.serving.inputs import float_tensor
from recsys.mmbee.requests import CandidateInput, RankRequest, RankResult


def rank_request(request: rank_pb2.RankCandidatesRequest) -> RankRequest:
    return RankRequest(
        user_id=request.user_id,
        candidates=tuple(_candidate(candidate, i) for i, candidate in enumerate(request.candidates)),
        top_k=request.top_k,
        user_numeric=dict(request.user_features.numeric_features),
        user_embeddings=_embeddings(request.user_features, "user_features"),
        user_categorical=dict(request.user_features.categorical_features),
        model_version=request.model_version,
    )


def _candidate(candidate: rank_pb2.Candidate, index: int) -> CandidateInput:
    if not candidate.HasField("features"):  # the common case: only ids (cheap: no map conversions)
        return CandidateInput(stream_id=candidate.stream_id, author_id=candidate.author_id)
    return CandidateInput(
        stream_id=candidate.stream_id,
        author_id=candidate.author_id,
        numeric=dict(candidate.features.numeric_features),
        embeddings=_embeddings(candidate.features, f"candidates[{index}].features"),
        categorical=dict(candidate.features.categorical_features),
    )


def _embeddings(features: features_pb2.FeatureSet, field: str) -> dict:
    return {
        name: float_tensor(tensor, f'{field}.embeddings["{name}"]')
        for name, tensor in sorted(features.embeddings.items())
    }


def rank_response(result: RankResult) -> rank_pb2.RankCandidatesResponse:
    return rank_pb2.RankCandidatesResponse(
        scored_candidates=[
            rank_pb2.ScoredCandidate(
                stream_id=scored.stream_id,
                author_id=scored.author_id,
                gtr_score=scored.score,
                rank=scored.rank,
            )
            for scored in result.scored
        ],
        model_version=result.model_version,
    )
