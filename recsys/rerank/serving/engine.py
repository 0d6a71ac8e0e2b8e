"""The rerank engine: `RerankEngine.load([model_dir, ...]).rerank(request) -> RerankResult`.

A model folder (`recsys.rerank.models.save_model_folder`, `kmono rerank train --out DIR`) holds the AR teacher,
the NAR student and the utility evaluator of one training run, and its version string. Several folders may be
loaded (experiments pin one with `model_version`); the first is the default.

One request is one `PageBatch` row (`page_batch`): the features are the item's upstream scores by objective
(a missing score is 0.0) and the one-hot of its category; authors are indices among the request's distinct
non-empty author ids (-1: none); the options row is `options_vector(objective_weights, diversity_weight)`; the
author cap, the layout and m = the slots the request asks for. Then:
1. the cap is checked feasible (`check_author_cap`) before any forward, so an impossible page is refused with its
   reason instead of decoded into a page that breaks it;
2. the chosen decoder (`greedy` with the student, NAR, one forward; or the teacher, AR, slot by slot) orders m
   items; both mask items already placed and authors at their cap;
3. each slot's score is the chosen item's raw logit at its step: the student's matching matrix (the same forward
   that decoded the page), or, for the teacher, one teacher-forced `step_logits` forward along the chosen page;
   the evaluator gives the page's expected utility.
Everything runs in `torch.inference_mode()`; nothing is sampled, so the same request always gets the same page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from libs.errors import UnknownModelVersion
from recsys.data.pages import CATEGORIES, FEATURES, LAYOUTS, OBJECTIVES, PageBatch, options_vector
from recsys.rerank.models import RerankModels, greedy, load_model_folder
from recsys.rerank.serving.requests import (
    DECODER_AR,
    DEFAULT_DECODER,
    DEFAULT_LAYOUT,
    PlacedItem,
    RerankRequest,
    RerankResult,
    RerankSpec,
    check_author_cap,
    check_request,
)

logger = logging.getLogger(__name__)

_CATEGORY_COLUMN = {name: len(OBJECTIVES) + i for i, name in enumerate(CATEGORIES)}


def page_batch(request: RerankRequest) -> PageBatch:
    """The request as one `PageBatch` row (n = its items, m = its slots); the request must be checked."""
    items = request.items
    features = np.zeros((len(items), len(FEATURES)), np.float32)
    authors = np.full(len(items), -1, np.int64)
    author_index: dict[str, int] = {}
    for i, item in enumerate(items):
        row = features[i]
        for column, name in enumerate(OBJECTIVES):
            row[column] = item.scores.get(name, 0.0)
        column = _CATEGORY_COLUMN.get(item.category)
        if column is not None:
            row[column] = 1.0
        if item.author_id:
            authors[i] = author_index.setdefault(item.author_id, len(author_index))
    options = options_vector(dict(request.objective_weights), request.diversity_weight)
    return PageBatch(
        features=torch.from_numpy(features).unsqueeze(0),  # [1, n, F]
        authors=torch.from_numpy(authors).unsqueeze(0),  # [1, n]
        valid=torch.ones(1, len(items), dtype=torch.bool),
        options=options.to(torch.float32).unsqueeze(0),  # [1, O]
        author_cap=torch.tensor([request.max_items_per_author], dtype=torch.long),
        layout=torch.tensor([LAYOUTS.index(request.layout or DEFAULT_LAYOUT)], dtype=torch.long),
        num_slots=request.slots,
    )


class _MatchingMatrix:
    """The NAR student's matching matrix, computed once, as a policy `greedy` decodes (its NAR contract:
    `logits(batch) -> [B, m, n]`), so decoding and the slot scores share one forward."""

    decodes_autoregressively = False

    def __init__(self, logits: torch.Tensor) -> None:
        self._logits = logits

    def logits(self, batch: PageBatch) -> torch.Tensor:
        return self._logits


@dataclass
class LoadedReranker:
    version: str
    models: RerankModels
    spec: RerankSpec

    def rerank(self, request: RerankRequest) -> RerankResult:
        decoder = request.decoder or DEFAULT_DECODER
        batch = page_batch(request)
        with torch.inference_mode():
            if decoder == DECODER_AR:
                decoded = greedy(self.models.teacher, batch)
                # teacher forcing along the chosen page: slot k's logits given slots < k (one forward)
                logits = self.models.teacher.step_logits(batch, decoded.orders[:, None])[0, 0]  # [m, n]
            else:
                logits = self.models.student.logits(batch)[0]  # [m, n]: the whole page in one forward
                decoded = greedy(_MatchingMatrix(logits[None]), batch)
            chosen = decoded.orders[0]  # [m]
            scores = logits.gather(1, chosen[:, None])[:, 0]  # [m]
            utility = self.models.evaluator.utility(batch, decoded.orders[:, None])[0, 0]
        ids = [request.items[i].item_id for i in chosen.tolist()]
        slots = tuple(
            PlacedItem(position, item_id, score, probability)
            for position, (item_id, score, probability) in enumerate(
                zip(ids, scores.tolist(), decoded.probs[0].tolist(), strict=True)
            )
        )
        return RerankResult(slots, float(utility), self.version, decoder)


def load_reranker(model_dir: str | Path) -> LoadedReranker:
    """A model folder loaded for serving (eval mode, CPU); its slot embeddings bound the page size."""
    models = load_model_folder(Path(model_dir)).eval()
    spec = RerankSpec(max_slots=models.config.max_slots)
    logger.info(
        "loaded rerank model %s from %s (at most %d slots)", models.version, model_dir, spec.max_slots
    )
    return LoadedReranker(models.version, models, spec)


class RerankEngine:
    def __init__(self, rerankers: Sequence[LoadedReranker]) -> None:
        if not rerankers:
            raise ValueError("a rerank engine needs at least one model")
        self.rerankers = {reranker.version: reranker for reranker in rerankers}
        self.default = rerankers[0]

    @classmethod
    def load(cls, model_dirs: Sequence[str | Path]) -> RerankEngine:
        return cls([load_reranker(path) for path in model_dirs])

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.rerankers)

    def reranker(self, version: str) -> LoadedReranker:
        if not version:
            return self.default
        if version not in self.rerankers:
            raise UnknownModelVersion(version, self.versions)
        return self.rerankers[version]

    def rerank(self, request: RerankRequest) -> RerankResult:
        """Check the request (FieldError naming the field), check that the author cap can fill the page
        (AuthorCapInfeasible), then decode it. Raises UnknownModelVersion for a version that is not loaded."""
        reranker = self.reranker(request.model_version)
        check_request(request, reranker.spec)
        check_author_cap(request)
        return reranker.rerank(request)
