"""RerankList proto <-> the engine's domain request and result (recsys.rerank.serving.requests). Only shapes and types
are read here; every rule about values lives in `recsys.rerank.serving.requests.check_request`.

Kept lean, since it runs per item on every call: an item without `features` (the common case) converts no
feature maps, and an embedding is passed on by name only (no rerank model reads one, so it is refused unread)."""

from __future__ import annotations

from kmono.common.v1 import features_pb2
from kmono.rerank.v1 import rerank_pb2

from recsys.rerank.serving.requests import (
    DECODER_AR,
    DECODER_NAR,
    NO_FEATURES,
    FeatureInput,
    ItemInput,
    RerankRequest,
    RerankResult,
)

_DECODERS = {
    rerank_pb2.DECODER_UNSPECIFIED: "",
    rerank_pb2.DECODER_NON_AUTOREGRESSIVE: DECODER_NAR,
    rerank_pb2.DECODER_AUTOREGRESSIVE: DECODER_AR,
}
_LAYOUTS = {
    rerank_pb2.LAYOUT_UNSPECIFIED: "",
    rerank_pb2.LAYOUT_GRID: "grid",
    rerank_pb2.LAYOUT_COLUMN: "column",
}


def rerank_request(request: rerank_pb2.RerankListRequest) -> RerankRequest:
    options = request.utility_options
    return RerankRequest(
        user_id=request.user_id,
        items=tuple(_item(item) for item in request.items),
        num_slots=request.num_slots,
        objective_weights=dict(options.objective_weights),
        diversity_weight=options.diversity_weight,
        max_items_per_author=options.max_items_per_author,
        # an enum value this server does not know stays visible (as its number) for check_request to refuse
        decoder=_DECODERS.get(request.decoder, str(request.decoder)),
        layout=_LAYOUTS.get(request.layout, str(request.layout)),
        model_version=request.model_version,
        user_features=_features(request.user_features) if request.HasField("user_features") else NO_FEATURES,
    )


def _item(item: rerank_pb2.RerankItem) -> ItemInput:
    features = _features(item.features) if item.HasField("features") else NO_FEATURES
    return ItemInput(item.item_id, item.author_id, dict(item.scores), features)


def _features(features: features_pb2.FeatureSet) -> FeatureInput:
    categorical, numeric, embeddings = (
        features.categorical_features,
        features.numeric_features,
        features.embeddings,
    )
    return FeatureInput(  # empty maps (the common case: only a category) convert to nothing
        categorical=dict(categorical) if categorical else {},
        numeric=dict(numeric) if numeric else {},
        embeddings=tuple(sorted(embeddings)) if embeddings else (),
    )


def rerank_response(result: RerankResult) -> rerank_pb2.RerankListResponse:
    return rerank_pb2.RerankListResponse(
        slots=[
            rerank_pb2.Slot(position=position, item_id=item_id, score=score, probability=probability)
            for position, item_id, score, probability in result.slots
        ],
        expected_utility=result.expected_utility,
        model_version=result.model_version,
    )
