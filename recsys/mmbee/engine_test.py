import dataclasses
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recsys.data.batches import random_batch
from recsys.mmbee.engine import CachedScorer, HmCache, RankingEngine
from recsys.mmbee.export import export_scorer, load_model_folder
from recsys.mmbee.models import MMBeeModel
from recsys.mmbee.requests import CandidateInput, RankRequest
from recsys.mmbee.testing import tiny_model_folder
from recsys.mmbee.training.testing import NUM_AUTHORS, NUM_USERS, tiny_mmbee


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("mmbee") / "model"
    tiny_model_folder(path)
    return path


@pytest.fixture(scope="module")
def engine(folder):
    return RankingEngine.load([folder])


@pytest.fixture(scope="module")
def known(engine):
    """(stream ids, author ids) of up to 40 streams the snapshot knows (the live ones: at least 16)."""
    streams = engine.default.featurizer.snapshot.table("streams")
    known = streams["key"].to_pylist()[:40], [f"a{a}" for a in streams["author"].to_pylist()[:40]]
    assert len(known[0]) >= 16
    return known


def candidates(streams, authors, **features):
    return tuple(CandidateInput(s, a, **features) for s, a in zip(streams, authors, strict=True))


def test_scores_rank_every_candidate_best_first_with_versions(engine, known):
    result = engine.score(RankRequest("u3", candidates(*known)))
    scores = [s.score for s in result.scored]
    assert len(result.scored) == len(known[0]) and scores == sorted(scores, reverse=True)
    assert [s.rank for s in result.scored] == list(range(1, len(known[0]) + 1))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {s.stream_id for s in result.scored} == set(known[0])
    assert result.model_version.startswith("mmbee-sim-") and result.snapshot_version


def test_top_k_keeps_the_best(engine, known):
    full = engine.score(RankRequest("u3", candidates(*known)))
    top = engine.score(RankRequest("u3", candidates(*known), top_k=5))
    assert [s.stream_id for s in top.scored] == [s.stream_id for s in full.scored[:5]]


def test_one_forward_scores_each_candidate_as_if_alone(engine, known):
    together = {s.stream_id: s.score for s in engine.score(RankRequest("u3", candidates(*known))).scored}
    alone = engine.score(RankRequest("u3", candidates(known[0][:1], known[1][:1]))).scored[0]
    assert alone.score == pytest.approx(together[alone.stream_id], abs=1e-6)


def test_unknown_users_streamers_and_streams_take_the_cold_start_path(engine, known):
    cold = engine.score(
        RankRequest("someone-new", candidates(["live-x", *known[0][:3]], ["new-streamer", *known[1][:3]]))
    )
    assert len(cold.scored) == 4 and all(np.isfinite(s.score) for s in cold.scored)
    warm = engine.score(RankRequest("u3", candidates(known[0][:3], known[1][:3])))
    assert {s.score for s in warm.scored} != {s.score for s in cold.scored if s.stream_id != "live-x"}


def test_request_features_override_the_stored_ones(engine, known):
    base = engine.score(RankRequest("u3", candidates(known[0][:1], known[1][:1]))).scored[0].score
    segment = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32) * 3
    override = CandidateInput(
        known[0][0], known[1][0], embeddings={"visual": segment}, numeric={"gift_rate": 9.0}
    )
    changed = engine.score(RankRequest("u3", (override,))).scored[0].score
    assert changed != pytest.approx(base, abs=1e-6)
    richer = engine.score(
        RankRequest("u3", candidates(known[0][:1], known[1][:1]), user_numeric={"log_gifts": 5.0})
    )
    assert richer.scored[0].score != pytest.approx(base, abs=1e-6)


def test_a_pinned_version_must_be_loaded(engine, known):
    version = engine.default.version
    assert engine.score(RankRequest("u3", candidates(*known), model_version=version)).model_version == version
    with pytest.raises(match=version):
        engine.score(RankRequest("u3", candidates(*known), model_version="mmbee-nope"))


# The h_m cache.


@pytest.fixture(scope="module")
def eager(folder):
    return load_model_folder(folder)[1]


class FusionCounter:
    """Wraps a ranker's fusion program: records how many rows each call computed."""

    def __init__(self, ranker) -> None:
        self.scorer = ranker.scorer.scorer
        self.h_m = self.scorer.h_m
        self.calls: list[int] = []
        self.scorer.h_m = self

    def __call__(self, batch, rows=None):
        self.calls.append(len(batch) if rows is None else len(rows))
        return self.h_m(batch, rows)

    def take(self) -> list[int]:
        calls, self.calls = self.calls, []
        return calls


def by_stream(result) -> dict[str, float]:
    return {s.stream_id: s.score for s in result.scored}


def eager_scores(engine, model, request) -> dict[str, float]:
    with torch.no_grad():
        scores = torch.sigmoid(model(engine.default.featurizer.batch(request))[:, 0]).tolist()
    return {c.stream_id: score for c, score in zip(request.candidates, scores, strict=True)}


def assert_close(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    np.testing.assert_allclose([actual[k] for k in expected], list(expected.values()), atol=atol, rtol=0)


def segment(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(10, 16)).astype(np.float32) * 3


def test_h_m_is_fused_once_per_streamer_and_segment_and_scores_equal_the_uncached_model(folder, known, eager):
    cached, uncached = RankingEngine.load([folder]), RankingEngine.load([folder], h_m_cache_rows=0)
    assert uncached.default.scorer.cache is None
    fusion = FusionCounter(cached.default)
    streams, authors = known
    n = len(streams)
    swapped = candidates(streams[:3], authors[3:6])  # known streams sent with other streamers: other keys
    cold = candidates(["live-x", "live-y", streams[0]], ["new-streamer", authors[0], "new-streamer"])
    override = CandidateInput("live-z", authors[2], embeddings={"speech": segment(1)})  # an unknown stream
    requests_and_fused = [
        (RankRequest("u3", candidates(streams[: n - 5], authors[: n - 5])), [n - 5]),
        (RankRequest("u5", candidates(streams[5:], authors[5:])), [5]),  # the last 5 are new
        (RankRequest("u7", candidates(streams[: n - 5], authors[: n - 5])), []),  # another viewer: all seen
        (RankRequest("u3", swapped), [3]),
        (RankRequest("someone-new", cold), [3]),
        (RankRequest("u2", (override, *candidates(streams[:2], authors[:2]))), [1]),
    ]
    for request, fused in requests_and_fused:
        scores = by_stream(cached.score(request))
        assert fusion.take() == fused, request
        assert_close(scores, by_stream(uncached.score(request)))
        assert_close(scores, eager_scores(cached, eager, request))
    assert len(cached.default.scorer.cache) == n + 3 + 3 + 1


def test_an_overridden_segment_is_never_served_another_segments_h_m(folder, known):
    cached, uncached = RankingEngine.load([folder]), RankingEngine.load([folder], h_m_cache_rows=0)
    fusion = FusionCounter(cached.default)
    stream, author = known[0][0], known[1][0]

    def score(**features) -> float:
        request = RankRequest("u3", candidates([stream], [author], **features))
        result = cached.score(request).scored[0].score
        assert result == pytest.approx(uncached.score(request).scored[0].score, abs=1e-5)
        return result

    stored = score()
    first = score(embeddings={"visual": segment(1)})
    second = score(embeddings={"visual": segment(2)})
    assert fusion.take() == [1, 1, 1] and len({stored, first, second}) == 3
    assert score() == stored and score(embeddings={"visual": segment(1)}) == first  # both cached, both right
    partial = score(embeddings={"visual": segment(1), "comments": segment(3)})
    assert partial != first and fusion.take() == [1]
    assert score(numeric={"gift_rate": 9.0}) != stored and fusion.take() == []  # statistics are not h_m's


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(folder, known):
    cached, uncached = RankingEngine.load([folder], h_m_cache_rows=8), RankingEngine.load([folder], 0)
    fusion = FusionCounter(cached.default)
    streams, authors = known
    n = len(streams)
    for request in [RankRequest(f"u{i}", candidates(streams, authors)) for i in (1, 2)]:
        assert_close(by_stream(cached.score(request)), by_stream(uncached.score(request)))
        assert len(cached.default.scorer.cache) == 8
    assert fusion.take() == [n, n - 8]  # the second request found the 8 most recent rows of the first
    # the cache now holds streams[n - 16 : n - 8], the last 8 the second request fused
    cached.score(RankRequest("u3", candidates(streams[n - 16 : n - 14], authors[n - 16 : n - 14])))
    cached.score(RankRequest("u3", candidates(streams[n - 6 :], authors[n - 6 :])))  # evicts 6 others
    cached.score(RankRequest("u3", candidates(streams[n - 16 : n - 14], authors[n - 16 : n - 14])))
    assert fusion.take() == [6]
    cached.score(RankRequest("u3", candidates(streams[n - 14 : n - 13], authors[n - 14 : n - 13])))
    assert fusion.take() == [1]


def test_concurrent_requests_get_the_scores_of_sequential_ones(folder, known):
    streams, authors = known
    k = len(streams) // 2
    requests = [
        RankRequest(
            f"u{i}",
            candidates(streams[i : i + k], authors[i : i + k])
            + (CandidateInput("live-q", authors[i], embeddings={"visual": segment(i % 3)}),),
        )
        for i in range(k)
    ]
    sequential = RankingEngine.load([folder])
    alone = [by_stream(sequential.score(request)) for request in requests]
    concurrent = RankingEngine.load([folder])
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = [by_stream(result) for result in pool.map(concurrent.score, requests)]
        again = [by_stream(result) for result in pool.map(concurrent.score, requests[::-1])][::-1]
    assert again == first  # once stored, a row is the one every request reads
    for together, single in zip(first, alone, strict=True):
        assert_close(together, single, atol=1e-6)  # rows fused in other batch compositions: rounding at most


def test_the_cache_keeps_the_first_row_stored_for_a_key_and_evicts_the_least_recently_used():
    cache = HmCache(capacity=2)
    assert cache.get_many(["a"]) == (None, [0])
    one, two, three = (np.full(4, value, np.float32) for value in (1, 2, 3))
    np.testing.assert_array_equal(cache.put_many(["a", "b"], np.stack([one, two])), [one, two])
    stored = cache.put_many(["a"], three[None])  # another request computed "a" too: the first row stays
    np.testing.assert_array_equal(stored, [one])
    rows, missing = cache.get_many(["a", "c"])  # "a" is now the most recent
    assert missing == [1]
    np.testing.assert_array_equal(rows[0], one)
    cache.put_many(["c"], three[None])  # evicts "b", the least recently used
    rows, missing = cache.get_many(["a", "b", "c"])
    assert missing == [1] and len(cache) == 2
    np.testing.assert_array_equal(rows[[0, 2]], [one, three])
    three_rows = np.stack([one, two, three])
    np.testing.assert_array_equal(cache.put_many(["d", "e", "f"], three_rows), three_rows)
    assert len(cache) == 2 and cache.get_many(["e", "f"])[1] == []  # more rows than room: the last ones stay
    with pytest.raises(ValueError, match="rows of width 3"):
        cache.put_many(["g"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        HmCache(0)


@pytest.mark.parametrize("h_m", [True, False])
def test_a_cached_scorer_without_keys_caches_by_streamer_and_segment_content(tmp_path, h_m):
    model = tiny_mmbee()
    if not h_m:
        config = dataclasses.replace(model.config, use_mfq=False)
        model = MMBeeModel(config, model.expansion_arch.theta_users, model.expansion_arch.theta_authors)
    scorer = export_scorer(
        model.eval(), random_batch(4, num_users=NUM_USERS, num_authors=NUM_AUTHORS), tmp_path
    )
    cached = CachedScorer(scorer, capacity=100)
    assert (cached.cache is not None) == h_m
    batch = random_batch(12, num_users=NUM_USERS, num_authors=NUM_AUTHORS)
    index = torch.arange(12) % 5  # 5 distinct (streamer, segment)s, each for several viewers
    batch.authors, batch.visual, batch.speech, batch.comments = (
        getattr(batch, name)[index] for name in ("authors", "visual", "speech", "comments")
    )
    batch.users = torch.arange(12) % NUM_USERS + 1
    uncached = scorer(batch)
    if h_m:
        fusion = FusionCounter(SimpleNamespace(scorer=cached))
    for _ in range(2):
        np.testing.assert_allclose(cached(batch), uncached, atol=1e-6, rtol=0)
    if h_m:
        assert fusion.take() == [5] and len(cached.cache) == 5
