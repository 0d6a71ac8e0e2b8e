"""The ranking engine: `RankingEngine.load([model_dir, ...]).score(request) -> RankResult`.

A model folder (written by `recsys.mmbee.pipeline.train_default` / `kmono mmbee train`) holds
- the exported scorer and its eager twin (`recsys.mmbee.export`: config.json, model.safetensors, scorer.pt2);
- `engine.json`: the version string requests pin, and what the featurizer must know (id-space sizes, segment
  seconds, history length, content width);
- `snapshot/`: the expansion snapshot the model was trained with (neighbour lists, Θ, and the serving feature
  tables of `recsys.mmbee.featurize`).
The engine answers with the model's and the snapshot's versions. Several folders may be loaded (for experiments
pinned by `model_version`); the first is the default. One forward scores all of a request's candidates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.batches import AUTHOR_DENSE, USER_DENSE
from recsys.mmbee.featurize import ServingFeaturizer
from recsys.mmbee.requests import RankRequest, RankResult, RankSpec, ScoredStream, check_request

logger = logging.getLogger(__name__)

ENGINE_FILE = "engine.json"
SNAPSHOT_DIR = "snapshot"


class UnknownModelVersion(LookupError):
    def __init__(self, version: str, available: Sequence[str]) -> None:
        super().__init__(f"no model version {version!r} is loaded; available: {', '.join(available)}")
        self.version = version
        self.available = tuple(available)


@dataclass
class LoadedRanker:
    version: str
    spec: RankSpec
    featurizer: ServingFeaturizer
    scorer: object
    """`scorer(batch) -> np.ndarray [B]` of GTR probabilities (the exported program)."""
    snapshot_version: str

    def score(self, request: RankRequest) -> RankResult:
        scores = np.asarray(self.scorer(self.featurizer.batch(request)), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")  # ties keep the request's order
        if request.top_k:
            order = order[: request.top_k]
        scored = tuple(
            ScoredStream(
                request.candidates[i].stream_id, request.candidates[i].author_id, float(scores[i]), rank
            )
            for rank, i in enumerate(order, start=1)
        )
        return RankResult(scored, self.version, self.snapshot_version)


def read_engine_file(model_dir: Path) -> dict:
    path = model_dir / ENGINE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not an MMBee model folder ({ENGINE_FILE} is missing); "
            "make one with `kmono mmbee train --out DIR`"
        )
    return json.loads(path.read_text())


def load_ranker(model_dir: str | Path) -> LoadedRanker:
    from recsys.features import Snapshot
    from recsys.mmbee.export import load_model_folder

    model_dir = Path(model_dir)
    settings = read_engine_file(model_dir)
    snapshot = Snapshot.open(model_dir / SNAPSHOT_DIR)
    _, _, scorer = load_model_folder(model_dir)
    spec = RankSpec(
        segment_seconds=settings["segment_seconds"],
        content_dim=settings["content_dim"],
        user_numeric=USER_DENSE,
        author_numeric=AUTHOR_DENSE,
    )
    featurizer = ServingFeaturizer(
        snapshot,
        num_users=settings["num_users"],
        num_authors=settings["num_authors"],
        segment_seconds=settings["segment_seconds"],
        history=settings["history"],
        content_dim=settings["content_dim"],
        max_segment_seconds=settings["max_segment_seconds"],
    )
    logger.info(
        "loaded MMBee model %s (snapshot %s) from %s", settings["version"], snapshot.version, model_dir
    )
    return LoadedRanker(settings["version"], spec, featurizer, scorer, snapshot.version)


class RankingEngine:
    def __init__(self, rankers: Sequence[LoadedRanker]) -> None:
        if not rankers:
            raise ValueError("a ranking engine needs at least one model")
        self.rankers = {ranker.version: ranker for ranker in rankers}
        self.default = rankers[0]

    @classmethod
    def load(cls, model_dirs: Sequence[str | Path]) -> RankingEngine:
        return cls([load_ranker(path) for path in model_dirs])

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.rankers)

    def ranker(self, version: str) -> LoadedRanker:
        if not version:
            return self.default
        if version not in self.rankers:
            raise UnknownModelVersion(version, self.versions)
        return self.rankers[version]

    def score(self, request: RankRequest) -> RankResult:
        """Check the request (FieldError naming the field), then score every candidate in one forward.
        Raises UnknownModelVersion for a `model_version` that is not loaded."""
        ranker = self.ranker(request.model_version)
        check_request(request, ranker.spec)
        return ranker.score(request)
