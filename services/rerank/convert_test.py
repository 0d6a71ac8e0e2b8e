"""The lean conversions give the same domain values and messages as plain `dict(...)` copies and message
lists would: maps keep their items, the response keeps slot order and every field."""

from kmono.rerank.v1 import rerank_pb2

from recsys.rerank.serving.requests import NO_FEATURES, PlacedItem, RerankResult
from services.rerank.convert import rerank_request, rerank_response


def test_maps_convert_to_plain_dicts_with_the_same_items():
    request = rerank_pb2.RerankListRequest(
        user_id="u1",
        num_slots=1,
        utility_options=rerank_pb2.UtilityOptions(objective_weights={"ctr": 1.0, "watch_time": 0.5}),
    )
    item = request.items.add(item_id="v1", author_id="a1", scores={"ctr": 0.25, "gtr": 2.0})
    item.features.categorical_features["category"] = "games"
    item.features.numeric_features["age"] = 3.0
    request.items.add(item_id="v2")

    domain = rerank_request(request)

    first, second = domain.items
    assert type(first.scores) is dict and first.scores == dict(request.items[0].scores)
    assert first.features.categorical == {"category": "games"} and first.features.numeric == {"age": 3.0}
    assert type(domain.objective_weights) is dict
    assert domain.objective_weights == dict(request.utility_options.objective_weights)
    assert second.scores == {} and second.features is NO_FEATURES


def test_the_response_keeps_slot_order_and_every_field():
    slots = (PlacedItem(0, "v2", 1.5, 0.75), PlacedItem(1, "v1", -0.5, 0.25))
    response = rerank_response(RerankResult(slots, 0.625, "dual-rerank-1", "nar"))
    assert response == rerank_pb2.RerankListResponse(
        slots=[rerank_pb2.Slot(position=p, item_id=i, score=s, probability=q) for p, i, s, q in slots],
        expected_utility=0.625,
        model_version="dual-rerank-1",
    )
