"""The ranking engine: `RankingEngine.load([model_dir, ...]).score(request) -> RankResult`.

A model folder (written by `recsys.mmbee.pipeline.train_default` / `kmono mmbee train`) holds
- the exported programs and their eager twin (`recsys.mmbee.export`: config.json, model.safetensors, scorer.pt2
  and, for a model with h_m on, fusion.pt2);
- `engine.json`: the version string requests pin, and what the featurizer must know (id-space sizes, segment
  seconds, history length, content width);
- `snapshot/`: the expansion snapshot the model was trained with (neighbour lists, Θ, and the serving feature
  tables of `recsys.mmbee.featurize`).
The engine answers with the model's and the snapshot's versions. Several folders may be loaded (for experiments
pinned by `model_version`); the first is the default. One forward scores all of a request's candidates: the
featurizer broadcasts the viewer's inputs over the candidates, and the folder's request program
(`recsys.mmbee.models.request`) reads them once, so the viewer's behaviour sequence, Θ row and metapath
neighbours are embedded once per request, not once per candidate (a format-2 folder, without that program, is
scored row by row as before).

h_m is cached. MFQ's h_m (the expensive part of MMBee: attention over every token of every candidate's
segment) depends on the streamer and its segment only, and one live stream is scored for every viewer who
opens the feed, so `CachedScorer` keeps h_m rows in a bounded LRU (`H_M_CACHE_ROWS` per loaded model) and each
request runs the fusion program once, on the candidates whose key it has not seen, then the scorer with every
candidate's row. With a format-3 folder the cached row is the candidate row (h_m, then GIE's attention over the
streamer's own metapaths, which depends on the streamer and h_m only: the candidate program runs right after
the fusion, on the same rows), so a request computes neither again (the paper's precomputed expansions).
The keys (`segment_keys`) are (stream id, author index, None) for a segment read from the snapshot (immutable
while the model is loaded, so such a row never goes stale) and (stream id, author index, digest of the
segment's bytes) when the request sends segment tokens itself, so an override is never served
the h_m of another segment. Concurrent requests (the servicer scores from several threads) share the cache
under a lock; the fusion runs outside it, and when two requests computed the same key the first stored row is
the one both use, so every request after that sees the same row. Scores equal the uncached model's within
float rounding (tested at 1e-5). A model without h_m is scored as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from libs.errors import UnknownModelVersion
from recsys.data.batches import AUTHOR_DENSE, USER_DENSE, GTRBatch
from recsys.mmbee.export.scorer import single_viewer
from recsys.mmbee.featurize import ServingFeaturizer
from recsys.mmbee.requests import RankRequest, RankResult, RankSpec, ScoredStream, check_request

logger = logging.getLogger(__name__)

ENGINE_FILE = "engine.json"
SNAPSHOT_DIR = "snapshot"
H_M_CACHE_ROWS = 100_000
"""Rows a loaded model keeps: candidate rows of d + P_c (d + 1) float32 (h_m, then GIE over the streamer's own
metapaths: 98 floats at the defaults, 100k rows = 39 MB), or h_m alone (d floats) for a format-2 folder."""
_SEGMENT_FIELDS = ("visual", "speech", "comments")


class HmCache:
    """A bounded, thread-safe LRU of cached rows (float32 [w] each) by key; the first row stored for a key wins.

    The rows live in one preallocated [capacity, w] array (np.empty: pages are only touched as rows arrive), so a
    request's rows come back as one gathered array, not a stack of small ones."""

    def __init__(self, capacity: int = H_M_CACHE_ROWS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._slots: OrderedDict[Hashable, int] = OrderedDict()
        self._rows: np.ndarray | None = None  # [capacity, w]
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    def get_many(self, keys: Sequence[Hashable]) -> tuple[np.ndarray | None, list[int]]:
        """(rows [len(keys), w], positions of the absent keys): the found keys' rows (the absent ones' rows are
        meaningless; None when nothing was ever stored); the found keys become the most recently used."""
        with self._lock:
            slots = [self._slots.get(key, -1) for key in keys]
            missing = [i for i, slot in enumerate(slots) if slot < 0]
            if self._rows is None:
                return None, missing
            touch = self._slots.move_to_end
            for key, slot in zip(keys, slots, strict=True):
                if slot >= 0:
                    touch(key)
            return self._rows[slots], missing  # a gathered copy: later evictions do not change it

    def put_many(self, keys: Sequence[Hashable], rows: np.ndarray) -> np.ndarray:
        """Store each key's row (`rows` [len(keys), w]) unless another request stored one first; returns the
        stored rows (the ones every later request will read), evicting the least recently used beyond
        `capacity`."""
        rows = np.asarray(rows, np.float32)
        stored = np.empty_like(rows)
        with self._lock:
            if self._rows is None:
                self._rows = np.empty((self.capacity, rows.shape[1]), np.float32)
            if rows.shape[1] != self._rows.shape[1]:
                raise ValueError(f"rows of width {rows.shape[1]}, the cache holds {self._rows.shape[1]}")
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is None:
                    if len(self._slots) < self.capacity:
                        slot = len(self._slots)
                    else:
                        _, slot = self._slots.popitem(last=False)  # the least recently used row's place
                    self._rows[slot] = rows[i]
                    self._slots[key] = slot
                stored[i] = self._rows[slot]
        return stored


class CachedScorer:
    """`scorer(batch, keys=None) -> np.ndarray [B]`: the model folder's `Scorer` with h_m cached per key.

    `keys[i]` must identify what h_m of row i depends on, the streamer and the segment tokens (`segment_keys`
    gives them from a request); without keys, row i's key is its author index and a digest of its segment's
    bytes (always right, slower to compute). `capacity=0`, or a model without h_m, scores uncached."""

    def __init__(self, scorer, capacity: int = H_M_CACHE_ROWS) -> None:
        self.scorer = scorer
        self.cache = HmCache(capacity) if capacity and scorer.takes_h_m else None

    @property
    def program(self):
        """The scorer's exported program."""
        return self.scorer.program

    def __call__(self, batch: GTRBatch, keys: Sequence[Hashable] | None = None) -> np.ndarray:
        if self.cache is None or len(batch) == 0:
            return self.scorer(batch)
        rows = self.rows(batch, content_keys(batch) if keys is None else keys)
        if self.scorer.candidate is not None and single_viewer(batch):
            return self.scorer.score_request(batch, candidate_rows=rows)
        return self.scorer(batch, rows[:, : self.scorer.h_m_dim])

    def rows(self, batch: GTRBatch, keys: Sequence[Hashable]) -> torch.Tensor:
        """The cached rows [B, w] of every row (`Scorer.cache_rows`: h_m and the candidate's own expansions),
        and one fusion (+ candidate program) call over the rows of unseen keys."""
        if self.cache is None:
            raise ValueError("this scorer caches no h_m (a model without h_m, or capacity 0)")
        if len(keys) != len(batch):
            raise ValueError(f"{len(keys)} keys for {len(batch)} rows")
        rows, missing = self.cache.get_many(keys)
        if missing:
            first = {}  # unseen key -> the first row that has it
            for i in missing:
                first.setdefault(keys[i], i)
            computed = self.scorer.cache_rows(
                batch, np.fromiter(first.values(), np.int64, len(first))
            ).numpy()
            stored = self.cache.put_many(list(first), computed)  # [U, w]
            if rows is None:
                rows = np.empty((len(keys), stored.shape[1]), np.float32)
            position = {key: j for j, key in enumerate(first)}
            rows[missing] = stored[[position[keys[i]] for i in missing]]
        return torch.from_numpy(rows)  # [B, w]


def segment_keys(request: RankRequest, batch: GTRBatch) -> list[tuple]:
    """The h_m cache key of each candidate of `batch` (built from `request`): (stream id, author index, None)
    for a segment from the snapshot, (stream id, author index, digest of the segment) for a request's own."""
    authors = batch.authors.tolist()
    overridden = [i for i, candidate in enumerate(request.candidates) if candidate.embeddings]
    digests = dict(zip(overridden, _segment_digests(batch, overridden), strict=True))
    return [
        (candidate.stream_id, author, digests.get(i))
        for i, (candidate, author) in enumerate(zip(request.candidates, authors, strict=True))
    ]


def content_keys(batch: GTRBatch) -> list[tuple]:
    """(author index, digest of the segment) of each row: what h_m depends on, whatever the row's origin."""
    return list(zip(batch.authors.tolist(), _segment_digests(batch, range(len(batch))), strict=True))


def _segment_digests(batch: GTRBatch, rows) -> list[bytes]:
    """A 128-bit digest of the segment tokens (every segment field) of each of `rows`."""
    index = np.fromiter(rows, np.int64)
    if not len(index):
        return []
    tokens = np.concatenate(
        [getattr(batch, name).numpy().reshape(len(batch), -1)[index] for name in _SEGMENT_FIELDS], 1
    )  # [R, 3 L D]: numpy views of the fields, no torch dispatch per field
    data, width = tokens.tobytes(), tokens.shape[1] * tokens.itemsize
    if not width:  # segments of no tokens: all alike
        return [hashlib.sha256(b"").digest()[:16]] * len(index)
    # SHA-256 (hardware-accelerated on x86 and ARM CPUs: about half blake2b's time per 2 KB segment here),
    # truncated to 128 bits
    return [hashlib.sha256(data[start : start + width]).digest()[:16] for start in range(0, len(data), width)]


@dataclass
class LoadedRanker:
    version: str
    spec: RankSpec
    featurizer: ServingFeaturizer
    scorer: CachedScorer
    """`scorer(batch, keys) -> np.ndarray [B]` of GTR probabilities (the exported programs, h_m cached)."""
    snapshot_version: str

    def score(self, request: RankRequest) -> RankResult:
        batch = self.featurizer.batch(request)
        scores = np.asarray(self.scorer(batch, segment_keys(request, batch)), dtype=np.float64)
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


def load_ranker(model_dir: str | Path, h_m_cache_rows: int = H_M_CACHE_ROWS) -> LoadedRanker:
    """The model folder loaded for serving; `h_m_cache_rows=0` scores without the h_m cache."""
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
    cached = CachedScorer(scorer, h_m_cache_rows)
    return LoadedRanker(settings["version"], spec, featurizer, cached, snapshot.version)


class RankingEngine:
    def __init__(self, rankers: Sequence[LoadedRanker]) -> None:
        if not rankers:
            raise ValueError("a ranking engine needs at least one model")
        self.rankers = {ranker.version: ranker for ranker in rankers}
        self.default = rankers[0]

    @classmethod
    def load(cls, model_dirs: Sequence[str | Path], h_m_cache_rows: int = H_M_CACHE_ROWS) -> RankingEngine:
        return cls([load_ranker(path, h_m_cache_rows) for path in model_dirs])

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
