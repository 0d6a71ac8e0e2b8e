"""What a rerank request is in domain terms, and every rule it must follow (torch-free).

The RerankService turns its proto into a `RerankRequest` (services/rerank/convert.py) and calls
`check_request(request, spec)`, which raises `libs.errors.FieldError` naming the request field at fault with the
proto's own path (`items[3].item_id`, `items[2].scores["ctr"]`, `utility_options.objective_weights["gtr"]`), so
the service answers INVALID_ARGUMENT without knowing a rule. `check_author_cap` is the one rule that is not about
a field's value but about the request as a whole: a per-author cap that leaves fewer fillable slots than the page
has is `AuthorCapInfeasible` (the service's FAILED_PRECONDITION, with the reason).

Our choices where the issue is silent:
- `num_slots` 0 means "as many as items" (the proto's comment); negative, or more than the items or than the model
  can fill (`RerankSpec.max_slots`), is invalid.
- A score name the model does not read (the ranking stage may send `gtr`, ...) is ignored, but every score must be
  a finite number within `MAX_ABS_SCORE` (a NaN upstream is a bug we report, not hide); a missing objective score
  is 0.0 (the item has no signal for it).
- An objective weight must name one of `OBJECTIVES` and be finite in [0, `MAX_WEIGHT`]; the diversity weight too.
  Weights that are all zero (and no diversity) value nothing: invalid. No weights at all: the defaults.
- Features the model does not read (anything but `categorical_features["category"]` of an item) are invalid, as
  in the RankingService: a client learns at once that they have no effect. An unknown category is not an error:
  it is "unknown" (an all-zero one-hot), like a new category the model never saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from libs.errors import FieldError
from recsys.data.pages import LAYOUTS, OBJECTIVES

MAX_ITEMS = 500
"""Most candidate items one request may rerank (one forward scores them all)."""
MAX_ID_CHARS = 128
MAX_ABS_SCORE = 1e6
"""Largest upstream score magnitude: beyond it float32 layers overflow long before the score means anything."""
MAX_WEIGHT = 1e3
"""Largest objective or diversity weight (a weight's scale is relative; this bounds overflow, not meaning)."""
CATEGORY_FEATURE = "category"
"""The one item feature the model reads: `features.categorical_features["category"]`, one of CATEGORIES."""
DECODER_NAR = "nar"
DECODER_AR = "ar"
DECODERS = (DECODER_NAR, DECODER_AR)
DEFAULT_DECODER = DECODER_NAR
"""The distilled non-autoregressive student: one forward for the whole page."""
DEFAULT_LAYOUT = "grid"
"""The short-video feed's two-column grid (its first screen shows slots 0-3)."""


@dataclass(frozen=True)
class FeatureInput:
    """A proto FeatureSet as the engine sees it: values it may read, names of the ones it cannot."""

    categorical: Mapping[str, str] = field(default_factory=dict)
    numeric: Mapping[str, float] = field(default_factory=dict)
    embeddings: tuple[str, ...] = ()
    """Names only: no rerank model reads an embedding, so their tensors are never decoded."""


NO_FEATURES = FeatureInput()


@dataclass(frozen=True)
class ItemInput:
    item_id: str
    author_id: str = ""
    """Empty: no author (the per-author cap does not apply to this item)."""
    scores: Mapping[str, float] = field(default_factory=dict)
    """The ranking stage's scores by objective name."""
    features: FeatureInput = NO_FEATURES

    @property
    def category(self) -> str:
        return self.features.categorical.get(CATEGORY_FEATURE, "")


@dataclass(frozen=True)
class RerankRequest:
    user_id: str
    items: tuple[ItemInput, ...]
    num_slots: int = 0
    """0: as many as items."""
    objective_weights: Mapping[str, float] = field(default_factory=dict)
    """Empty: the defaults (`recsys.data.pages.DEFAULT_OBJECTIVE_WEIGHTS`)."""
    diversity_weight: float = 0.0
    max_items_per_author: int = 0
    """0: no limit."""
    decoder: str = ""
    """One of DECODERS; empty: DEFAULT_DECODER."""
    layout: str = ""
    """One of `recsys.data.pages.LAYOUTS`; empty: DEFAULT_LAYOUT."""
    model_version: str = ""
    user_features: FeatureInput = NO_FEATURES

    @property
    def slots(self) -> int:
        """The number of slots to fill (num_slots, or every item when it is 0)."""
        return self.num_slots or len(self.items)


@dataclass(frozen=True)
class RerankSpec:
    """What a loaded model accepts."""

    max_slots: int
    """Most slots its decoders fill (the student's position embeddings)."""
    max_items: int = MAX_ITEMS


class PlacedItem(NamedTuple):
    position: int
    item_id: str
    score: float
    """The decoder's logit of the item at this position (higher is better)."""
    probability: float
    """The decoder's probability of choosing this item at this position, given the slots before it."""


@dataclass(frozen=True)
class RerankResult:
    slots: tuple[PlacedItem, ...]
    expected_utility: float
    """The model's estimate of the page's utility, weighted by the request's options."""
    model_version: str
    decoder: str


class AuthorCapInfeasible(Exception):
    """`max_items_per_author` leaves fewer fillable slots than the page has (FAILED_PRECONDITION)."""

    def __init__(self, cap: int, fillable: int, num_slots: int) -> None:
        super().__init__(
            f"max_items_per_author={cap} can fill at most {fillable} of the {num_slots} slots (at most {cap} "
            "per author, plus the items without an author); raise the cap, send more authors' items or ask "
            "for fewer slots"
        )
        self.cap = cap
        self.fillable = fillable
        self.num_slots = num_slots


def check_request(request: RerankRequest, spec: RerankSpec) -> None:
    """Raise FieldError (proto field paths) for anything the engine cannot rerank."""
    _check_id(request.user_id, "user_id")
    items = request.items
    if not items:
        raise FieldError("items", "required: at least one item (item_id)")
    if len(items) > spec.max_items:
        raise FieldError(
            "items",
            f"at most {spec.max_items} items per request, got {len(items)}",
            code="TOO_MANY_ITEMS",
        )
    _check_num_slots(request.num_slots, len(items), spec.max_slots)
    _check_options(request)
    if request.decoder and request.decoder not in DECODERS:
        raise FieldError("decoder", f"unknown decoder {request.decoder}")
    if request.layout and request.layout not in LAYOUTS:
        raise FieldError("layout", f"unknown layout {request.layout}")
    _check_features("user_features", request.user_features, allowed=())
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"items[{i}]"
        _check_id(item.item_id, f"{where}.item_id")
        if item.item_id in seen:
            raise FieldError(
                f"{where}.item_id",
                f"duplicate of items[{seen[item.item_id]}].item_id ({item.item_id!r}); send each item once",
            )
        seen[item.item_id] = i
        if len(item.author_id) > MAX_ID_CHARS:
            raise FieldError(
                f"{where}.author_id", f"at most {MAX_ID_CHARS} characters, got {len(item.author_id)}"
            )
        for name, value in item.scores.items():
            if not (math.isfinite(value) and abs(value) <= MAX_ABS_SCORE):
                raise FieldError(
                    f'{where}.scores["{name}"]',
                    f"must be a finite number within ±{MAX_ABS_SCORE:g}, got {value}",
                )
        if item.features is not NO_FEATURES:
            _check_features(f"{where}.features", item.features, allowed=(CATEGORY_FEATURE,))


def check_author_cap(request: RerankRequest) -> None:
    """Raise AuthorCapInfeasible when the page's slots cannot all be filled within `max_items_per_author`:
    the sum over authors of min(their items, cap), plus the items without an author, is below the slots."""
    cap = request.max_items_per_author
    if cap <= 0:
        return
    counts: dict[str, int] = {}
    for item in request.items:
        counts[item.author_id] = counts.get(item.author_id, 0) + 1
    anonymous = counts.pop("", 0)
    fillable = anonymous + sum(min(count, cap) for count in counts.values())
    if fillable < request.slots:
        raise AuthorCapInfeasible(cap, fillable, request.slots)


def _check_id(value: str, where: str) -> None:
    if not value:
        raise FieldError(where, "required: a non-empty id")
    if len(value) > MAX_ID_CHARS:
        raise FieldError(where, f"at most {MAX_ID_CHARS} characters, got {len(value)}")


def _check_num_slots(num_slots: int, num_items: int, max_slots: int) -> None:
    if num_slots < 0:
        raise FieldError("num_slots", f"must be >= 0 (0: as many as items), got {num_slots}")
    slots = num_slots or num_items
    if slots > num_items:
        raise FieldError("num_slots", f"must be <= the number of items ({num_items}), got {num_slots}")
    if slots > max_slots:
        given = f"{num_slots}" if num_slots else f"0, i.e. every one of the {num_items} items"
        raise FieldError("num_slots", f"this model fills at most {max_slots} slots, got {given}")


def _check_options(request: RerankRequest) -> None:
    where = "utility_options"
    for name, weight in request.objective_weights.items():
        path = f'{where}.objective_weights["{name}"]'
        if name not in OBJECTIVES:
            raise FieldError(path, f"unknown objective; the page weighs {', '.join(OBJECTIVES)}")
        _check_weight(weight, path)
    _check_weight(request.diversity_weight, f"{where}.diversity_weight")
    if request.objective_weights and not (
        any(w > 0 for w in request.objective_weights.values()) or request.diversity_weight > 0
    ):
        raise FieldError(
            f"{where}.objective_weights",
            "every weight is 0, so every page is worth the same; give one a positive weight, "
            "or send none for the defaults",
        )
    if request.max_items_per_author < 0:
        raise FieldError(
            f"{where}.max_items_per_author", f"must be >= 0 (0: no limit), got {request.max_items_per_author}"
        )


def _check_weight(value: float, path: str) -> None:
    if not (math.isfinite(value) and 0 <= value <= MAX_WEIGHT):
        raise FieldError(path, f"must be a finite number in [0, {MAX_WEIGHT:g}], got {value}")


def _check_features(where: str, features: FeatureInput, allowed: Sequence[str]) -> None:
    reads = ", ".join(f'categorical_features["{name}"]' for name in allowed) or "none"
    for name in features.numeric:
        raise FieldError(
            f'{where}.numeric_features["{name}"]', f"this model reads no numeric features ({reads})"
        )
    for name in features.embeddings:
        raise FieldError(f'{where}.embeddings["{name}"]', f"this model reads no embeddings ({reads})")
    for name, value in features.categorical.items():
        path = f'{where}.categorical_features["{name}"]'
        if name not in allowed:
            raise FieldError(path, f"unknown feature; this model reads {reads}")
        if len(value) > MAX_ID_CHARS:
            raise FieldError(path, f"at most {MAX_ID_CHARS} characters, got {len(value)}")
