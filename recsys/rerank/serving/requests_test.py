import math

import pytest

from libs.errors import FieldError
from recsys.rerank.serving.requests import (
    MAX_ITEMS,
    AuthorCapInfeasible,
    FeatureInput,
    ItemInput,
    RerankRequest,
    RerankSpec,
    check_author_cap,
    check_request,
)

SPEC = RerankSpec(max_slots=10)


def items(count: int, authors: str = "abcdefghij") -> tuple[ItemInput, ...]:
    return tuple(
        ItemInput(f"v{i}", authors[i % len(authors)], {"ctr": 0.1 * i, "gtr": 3.0}) for i in range(count)
    )


def request(**fields) -> RerankRequest:
    return RerankRequest(**{"user_id": "u1", "items": items(6), "num_slots": 4, **fields})


def field_of(bad: RerankRequest, spec: RerankSpec = SPEC) -> str:
    with pytest.raises(FieldError) as error:
        check_request(bad, spec)
    return error.value.field


def test_a_valid_request_passes_and_zero_slots_means_every_item():
    check_request(request(), SPEC)
    check_request(request(num_slots=0, objective_weights={"ctr": 2.0}, diversity_weight=0.5), SPEC)
    assert request(num_slots=0).slots == 6 and request().slots == 4


def test_unknown_score_names_and_categories_are_accepted():
    odd = ItemInput("x", scores={"gtr": 9.0}, features=FeatureInput(categorical={"category": "knitting"}))
    check_request(request(items=(odd, *items(4))), SPEC)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 129}, "user_id"),
        ({"items": ()}, "items"),
        ({"items": items(MAX_ITEMS + 1)}, "items"),
        ({"items": (*items(4), ItemInput("v1"))}, "items[4].item_id"),
        ({"items": (ItemInput(""), *items(4))}, "items[0].item_id"),
        ({"items": (ItemInput("x", "a" * 129), *items(4))}, "items[0].author_id"),
        ({"num_slots": -1}, "num_slots"),
        ({"num_slots": 7}, "num_slots"),
        ({"num_slots": 0, "items": items(11)}, "num_slots"),  # 0 = 11 slots > the model's 10
        ({"items": (ItemInput("x", scores={"ctr": math.nan}), *items(4))}, 'items[0].scores["ctr"]'),
        ({"items": (*items(4), ItemInput("x", scores={"gtr": math.inf}))}, 'items[4].scores["gtr"]'),
        ({"items": (ItemInput("x", scores={"ctr": 1e30}), *items(4))}, 'items[0].scores["ctr"]'),
        ({"objective_weights": {"gtr": 1.0}}, 'utility_options.objective_weights["gtr"]'),
        ({"objective_weights": {"ctr": -1.0}}, 'utility_options.objective_weights["ctr"]'),
        ({"objective_weights": {"ctr": math.nan}}, 'utility_options.objective_weights["ctr"]'),
        ({"objective_weights": {"ctr": 0.0, "watch_time": 0.0}}, "utility_options.objective_weights"),
        ({"diversity_weight": math.nan}, "utility_options.diversity_weight"),
        ({"diversity_weight": -0.5}, "utility_options.diversity_weight"),
        ({"max_items_per_author": -1}, "utility_options.max_items_per_author"),
        ({"decoder": "beam"}, "decoder"),
        ({"layout": "carousel"}, "layout"),
        ({"user_features": FeatureInput(numeric={"age": 3.0})}, 'user_features.numeric_features["age"]'),
        (
            {"items": (ItemInput("x", features=FeatureInput(categorical={"genre": "pop"})), *items(4))},
            'items[0].features.categorical_features["genre"]',
        ),
        (
            {"items": (*items(4), ItemInput("x", features=FeatureInput(embeddings=("visual",))))},
            'items[4].features.embeddings["visual"]',
        ),
    ],
)
def test_bad_input_names_the_field(fields, field):
    assert field_of(request(**fields)) == field


def test_zero_weights_are_valid_when_diversity_is_weighed():
    check_request(request(objective_weights={"ctr": 0.0}, diversity_weight=1.0), SPEC)


def test_author_cap_feasibility_counts_min_of_count_and_cap_plus_authorless_items():
    page = (
        ItemInput("a1", "a"),
        ItemInput("a2", "a"),
        ItemInput("a3", "a"),
        ItemInput("b1", "b"),
        ItemInput("n1", ""),
    )
    # cap 1: a, b and the authorless item fill 3 slots, not 4
    check_author_cap(RerankRequest("u", page, num_slots=3, max_items_per_author=1))
    with pytest.raises(AuthorCapInfeasible) as error:
        check_author_cap(RerankRequest("u", page, num_slots=4, max_items_per_author=1))
    assert (error.value.fillable, error.value.num_slots) == (3, 4)
    assert "max_items_per_author=1" in str(error.value)
    check_author_cap(RerankRequest("u", page, num_slots=4, max_items_per_author=2))  # 2 + 1 + 1
    with pytest.raises(AuthorCapInfeasible):  # 0 slots means all 5: 2 + 1 + 1 = 4
        check_author_cap(RerankRequest("u", page, num_slots=0, max_items_per_author=2))
    check_author_cap(RerankRequest("u", page, num_slots=0, max_items_per_author=0))  # 0: no limit
