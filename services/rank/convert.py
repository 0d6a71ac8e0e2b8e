"""RankCandidates proto <-> the engine's domain request and result (recsys.mmbee.requests). Only shapes and
types are read here; every rule about values lives in `recsys.mmbee.requests.check_request`.

Kept lean, since it runs per candidate on every call and is pure overhead against in-process scoring (200
candidates, 129 of them carrying their current segment as three tensors: 1.46 -> 0.87 ms on a 2-core CPU, beside
~5 ms of scoring; a request-level packed tensor would take it to ~0.1 ms, but that is a contract change):
- a candidate without `features` (ids only) converts no feature maps, and empty maps convert to nothing;
- a float32 tensor (a segment's tokens [seconds, dim]) becomes a read-only view of the field's bytes, no copy
  (`libs.serving.inputs.float_tensor`, which holds every rule and message about tensors): the engine only reads
  it (the featurizer copies it into the batch);
- the response's candidates are added in place (`rank_response`).
"""

from __future__ import annotations

import numpy as np
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
    features = candidate.features
    numeric, categorical = features.numeric_features, features.categorical_features
    return CandidateInput(
        stream_id=candidate.stream_id,
        author_id=candidate.author_id,
        numeric=dict(numeric) if numeric else {},
        embeddings=_embeddings(features, index),
        categorical=dict(categorical) if categorical else {},
    )


def _embeddings(features: features_pb2.FeatureSet, where: str | int) -> dict[str, np.ndarray]:
    """name -> array of each embedding (`float_tensor`: float32 ones are read-only views), in name order;
    `where` is the field of `features`, or the index of the candidate whose features they are."""
    tensors = features.embeddings
    if not tensors:
        return {}
    field = f"candidates[{where}].features" if isinstance(where, int) else where
    return {name: float_tensor(tensors[name], f'{field}.embeddings["{name}"]') for name in sorted(tensors)}


def rank_response(result: RankResult) -> rank_pb2.RankCandidatesResponse:
    """Built with `add` on the repeated field: each candidate is made in place, where a list of
    ScoredCandidate messages passed to the constructor is built first and then copied in (2-3x slower)."""
    response = rank_pb2.RankCandidatesResponse(model_version=result.model_version)
    add = response.scored_candidates.add
    for scored in result.scored:
        add(stream_id=scored.stream_id, author_id=scored.author_id, gtr_score=scored.score, rank=scored.rank)
    return response
