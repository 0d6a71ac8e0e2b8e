"""The demo's reranking step: a client of the RerankService, as a short-video feed would call it.

One page of the two-column grid feed: the ranking stage hands over 8 videos, best score first, and the top three
are all gaming videos, two of them by the same author. The page's first screen shows 4 slots; the request weighs
diversity and allows one video per author (`max_items_per_author=1`). The demo prints the page before (the
upstream order) and after (slot, item, category, author, the decoder's probability) and the model's expected
utility, and checks that the answer is a page of 4 distinct candidates that keeps the cap.

The service serves the embedded default model (`recsys.rerank.defaults`, trained by `kmono rerank train`).
"""

from __future__ import annotations

from pathlib import Path

import grpc
from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

# (item, category, author, ctr, watch_time, satisfaction): the ranking stage's order
UPSTREAM = (
    ("vid-gaming-1", "gaming", "ana", 0.31, 0.62, 0.4),
    ("vid-gaming-2", "gaming", "ana", 0.29, 0.58, 0.3),
    ("vid-gaming-3", "gaming", "ben", 0.27, 0.55, 0.2),
    ("vid-music-1", "music", "cai", 0.22, 0.70, 0.6),
    ("vid-food-1", "food", "dee", 0.20, 0.66, 0.7),
    ("vid-sports-1", "sports", "eve", 0.18, 0.50, 0.1),
    ("vid-comedy-1", "comedy", "fay", 0.15, 0.72, 0.5),
    ("vid-pets-1", "pets", "gus", 0.12, 0.80, 0.8),
)
SLOTS = 4
CAP = 1
DIVERSITY = 0.5


def model_args(work_dir: Path) -> tuple[list[str], str]:
    """Flags of the rerank service and a description: the embedded default model (`work_dir` is unused; kept so
    every service's arguments are built alike)."""
    from recsys.rerank.defaults import DEFAULT_MODEL_PATH

    return [
        "--model",
        str(DEFAULT_MODEL_PATH),
        "--torch-threads",
        "1",
    ], f"embedded default {DEFAULT_MODEL_PATH}"


def page_request() -> rerank_pb2.RerankListRequest:
    request = rerank_pb2.RerankListRequest(
        user_id="viewer-7",
        num_slots=SLOTS,
        layout=rerank_pb2.LAYOUT_GRID,
        utility_options=rerank_pb2.UtilityOptions(diversity_weight=DIVERSITY, max_items_per_author=CAP),
    )
    for item_id, category, author, ctr, watch, satisfaction in UPSTREAM:
        item = request.items.add(
            item_id=item_id,
            author_id=author,
            scores={"ctr": ctr, "watch_time": watch, "satisfaction": satisfaction},
        )
        item.features.categorical_features["category"] = category
    return request


def run_rerank_calls(port: int, model_text: str = "") -> bool:
    request = page_request()
    about = {item_id: (category, author) for item_id, category, author, *_ in UPSTREAM}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = rerank_pb2_grpc.RerankServiceStub(channel).RerankList(request, timeout=30)
    print(f"rerank: {len(UPSTREAM)} candidates -> {SLOTS} grid slots, at most {CAP} per author, diversity "
          f"weight {DIVERSITY}, model {reply.model_version}{f' ({model_text})' if model_text else ''}")  # fmt: skip
    print("  before (upstream order):")
    for rank, (item_id, category, author, ctr, *_) in enumerate(UPSTREAM):
        print(f"    #{rank}  {item_id:13s} {category:7s} by {author:4s} ctr {ctr:.2f}")
    print("  after (the reranked page):")
    for slot in reply.slots:
        category, author = about.get(slot.item_id, ("?", "?"))
        print(f"    slot {slot.position} (row {slot.position // 2}, col {slot.position % 2})  {slot.item_id:13s} "
              f"{category:7s} by {author:4s} p {slot.probability:.3f}")  # fmt: skip
    print(f"  expected utility {reply.expected_utility:.4f}")
    ids = [slot.item_id for slot in reply.slots]
    authors = [about[i][1] for i in ids if i in about]
    return len(ids) == SLOTS == len(set(authors)) == len(authors) and all(
        0 < s.probability <= 1 for s in reply.slots
    )
