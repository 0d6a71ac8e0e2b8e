import numpy as np
import pytest

from recsys.mmbee.engine import RankingEngine, UnknownModelVersion
from recsys.mmbee.requests import CandidateInput, RankRequest
from recsys.mmbee.testing import tiny_model_folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmbee") / "model"
    tiny_model_folder(folder)
    return RankingEngine.load([folder])


@pytest.fixture(scope="module")
def known(engine):
    """(stream ids, author ids) of streams the snapshot knows."""
    streams = engine.default.featurizer.snapshot.table("streams")
    return streams["key"].to_pylist()[:40], [f"a{a}" for a in streams["author"].to_pylist()[:40]]


def candidates(streams, authors, **features):
    return tuple(CandidateInput(s, a, **features) for s, a in zip(streams, authors, strict=True))


def test_scores_rank_every_candidate_best_first_with_versions(engine, known):
    result = engine.score(RankRequest("u3", candidates(*known)))
    scores = [s.score for s in result.scored]
    assert len(result.scored) == 40 and scores == sorted(scores, reverse=True)
    assert [s.rank for s in result.scored] == list(range(1, 41))
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
    with pytest.raises(UnknownModelVersion, match=version):
        engine.score(RankRequest("u3", candidates(*known), model_version="mmbee-nope"))
