"""What a ranking request is in domain terms, and every rule it must follow (torch-free).

The RankingService turns its proto into a `RankRequest` (services/rank/convert.py) and calls
`check_request(request, spec)`, which raises `libs.errors.FieldError` naming the request field at fault with
the proto's own path (`candidates[3].features.embeddings["visual"]`), so the service answers INVALID_ARGUMENT
without knowing a rule. What is *not* an error: an unknown user or streamer (the cold-start path scores it from
the default id row plus its content and graph features) and a stream the feature store has never seen (its
segment is zeros unless the request sends one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from libs.errors import FieldError

MAX_CANDIDATES = 500
"""Most candidates one request may score (the issue's contract; the scorer batches them in one forward)."""
MAX_ID_CHARS = 128
CONTENT_EMBEDDINGS = ("visual", "speech", "comments")
"""Stream feature overrides: the current segment's tokens per modality, each [segment_seconds, content_dim]."""


@dataclass(frozen=True)
class CandidateInput:
    stream_id: str
    author_id: str
    numeric: Mapping[str, float] = field(default_factory=dict)
    """Overrides of the streamer's statistics (`recsys.data.batches.AUTHOR_DENSE` names)."""
    embeddings: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Overrides of the current segment (`CONTENT_EMBEDDINGS` names)."""
    categorical: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RankRequest:
    user_id: str
    candidates: tuple[CandidateInput, ...]
    top_k: int = 0
    user_numeric: Mapping[str, float] = field(default_factory=dict)
    """Overrides of the viewer's statistics (`recsys.data.batches.USER_DENSE` names)."""
    user_embeddings: Mapping[str, np.ndarray] = field(default_factory=dict)
    user_categorical: Mapping[str, str] = field(default_factory=dict)
    model_version: str = ""


@dataclass(frozen=True)
class RankSpec:
    """What a loaded model accepts: the names and shapes of the features a request may override."""

    segment_seconds: int
    content_dim: int
    user_numeric: tuple[str, ...]
    author_numeric: tuple[str, ...]
    max_candidates: int = MAX_CANDIDATES


@dataclass(frozen=True)
class ScoredStream:
    stream_id: str
    author_id: str
    score: float
    """Predicted gift-through-rate in [0, 1]."""
    rank: int
    """1-based; 1 is the best."""


@dataclass(frozen=True)
class RankResult:
    scored: tuple[ScoredStream, ...]
    model_version: str
    snapshot_version: str


def check_request(request: RankRequest, spec: RankSpec) -> None:
    """Raise FieldError (proto field paths) for anything the engine cannot score."""
    _check_id(request.user_id, "user_id")
    if not request.candidates:
        raise FieldError("candidates", "required: at least one candidate (stream_id, author_id)")
    if len(request.candidates) > spec.max_candidates:
        raise FieldError(
            "candidates",
            f"at most {spec.max_candidates} candidates per request, got {len(request.candidates)}; "
            "split them into several requests",
            code="TOO_MANY_CANDIDATES",
        )
    if request.top_k < 0:
        raise FieldError("top_k", f"must be >= 0 (0: all candidates), got {request.top_k}")
    _check_features("user_features", request.user_numeric, request.user_embeddings, request.user_categorical,
                    spec.user_numeric, (), spec)  # fmt: skip
    seen: dict[str, int] = {}
    for i, candidate in enumerate(request.candidates):
        where = f"candidates[{i}]"
        _check_id(candidate.stream_id, f"{where}.stream_id")
        _check_id(candidate.author_id, f"{where}.author_id")
        if candidate.stream_id in seen:
            raise FieldError(
                f"{where}.stream_id",
                f"duplicate of candidates[{seen[candidate.stream_id]}].stream_id ({candidate.stream_id!r}); "
                "send each stream once",
            )
        seen[candidate.stream_id] = i
        _check_features(f"{where}.features", candidate.numeric, candidate.embeddings, candidate.categorical,
                        spec.author_numeric, CONTENT_EMBEDDINGS, spec)  # fmt: skip


def _check_id(value: str, where: str) -> None:
    if not value:
        raise FieldError(where, "required: a non-empty id")
    if len(value) > MAX_ID_CHARS:
        raise FieldError(where, f"at most {MAX_ID_CHARS} characters, got {len(value)}")


def _check_features(where, numeric, embeddings, categorical, numeric_names, embedding_names, spec) -> None:
    for name, value in numeric.items():
        path = f'{where}.numeric_features["{name}"]'
        if name not in numeric_names:
            raise FieldError(path, f"unknown feature; this model reads {_listed(numeric_names)}")
        if not math.isfinite(value):
            raise FieldError(path, f"must be a finite number, got {value}")
    for name in categorical:
        raise FieldError(
            f'{where}.categorical_features["{name}"]', "this model reads no categorical features"
        )
    for name, value in embeddings.items():
        path = f'{where}.embeddings["{name}"]'
        if name not in embedding_names:
            raise FieldError(path, f"unknown embedding; this model reads {_listed(embedding_names)}")
        expected = (spec.segment_seconds, spec.content_dim)
        if value.shape != expected:
            raise FieldError(
                path,
                f"must have shape {list(expected)} (one token per second of the current segment), "
                f"got {list(value.shape)}",
            )
        if not np.isfinite(value).all():
            raise FieldError(path, "must hold finite numbers only (no NaN or infinity)")


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "none"
