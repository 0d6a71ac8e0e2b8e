"""gRPC services: each translates proto messages to domain requests and delegates to an engine.

One package per service (`services/<name>/`): config.py (frozen settings from flags/env), servicer.py
(proto <-> domain only), server.py (build the registrations, `main`). Run one with `python -m services.<name>`
or `kmono serve <name>`.
"""

SERVICE_NAMES = ("video", "masks", "rank", "rerank", "dialogue")
SERVICE_FULL_NAMES = {
    "video": "kmono.video.v1.VideoGenerationService",
    "masks": "kmono.masks.v1.MaskService",
    "rank": "kmono.rank.v1.RankingService",
    "rerank": "kmono.rerank.v1.RerankService",
    "dialogue": "kmono.dialogue.v1.DialogueService",
}
"""The gRPC service each one serves (its health-check and reflection name)."""
