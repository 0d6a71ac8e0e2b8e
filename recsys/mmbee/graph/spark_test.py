"""The Spark job in local mode gives the local job's lists exactly, and the same snapshot version
(skipped without pyspark or Java)."""

import importlib.util
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.batches import METAPATHS
from recsys.mmbee.graph.config import ExpansionConfig, GraphCLConfig, SwingConfig
from recsys.mmbee.graph.expand import run_expansion, run_expansion_spark
from recsys.mmbee.graph.metapaths import gift_matrix, metapath_neighbours
from recsys.mmbee.graph.swing import swing

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed"),
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)"),
]

NUM_USERS, NUM_AUTHORS = 40, 12
CONFIG = ExpansionConfig(
    k=5,
    swing=SwingConfig(alpha=1.0, beta=1.0, gamma=0.3),
    graphcl=GraphCLConfig(dim=8, epochs=2, batch_size=64),
)


def random_edges(seed: int) -> dict:
    """Integer gifts (many exact ties) for half the edges, fractional ones (inexact float sums) for the rest;
    some duplicate (user, author) pairs and a zero gift."""
    rng = np.random.default_rng(seed)
    n = 160
    gifts = np.where(rng.random(n) < 0.5, rng.integers(1, 4, n), rng.random(n) * 3)
    gifts[0] = 0.0
    return {
        "user": rng.integers(1, NUM_USERS + 1, n),
        "author": rng.integers(1, NUM_AUTHORS + 1, n),
        "gifts": gifts,
    }


@pytest.fixture(scope="module")
def spark():
    from recsys.mmbee.graph.spark import spark_session

    session = spark_session("local[2]", shuffle_partitions=3)
    yield session
    session.stop()


def local_lists(edges: dict):
    matrix = gift_matrix(edges["user"], edges["author"], edges["gifts"], NUM_USERS, NUM_AUTHORS)
    return matrix, metapath_neighbours(matrix, config=CONFIG)


def test_swing_on_spark_equals_the_local_swing(spark):
    from recsys.mmbee.graph.spark import edge_frame, spark_swing

    edges = random_edges(0)
    matrix, _ = local_lists(edges)
    rows = spark_swing(edge_frame(spark, edges), CONFIG.swing).collect()
    got = sp.csr_matrix(
        ([r.score for r in rows], ([r.src for r in rows], [r.dst for r in rows])),
        shape=(NUM_AUTHORS + 1,) * 2,
    ).toarray()
    np.testing.assert_allclose(got, swing(matrix, CONFIG.swing).toarray(), rtol=1e-12, atol=0)


def test_spark_lists_are_identical_to_the_local_lists(spark):
    from recsys.mmbee.graph.spark import spark_metapath_neighbours

    edges = random_edges(1)
    _, want = local_lists(edges)
    got = spark_metapath_neighbours(spark, edges, NUM_USERS, NUM_AUTHORS, CONFIG)
    assert set(got) == set(METAPATHS)
    for name in METAPATHS:
        np.testing.assert_array_equal(got[name][0], want[name][0], err_msg=name)
        np.testing.assert_array_equal(got[name][1], want[name][1], err_msg=name)
        assert (want[name][0][1:, 0] > 0).any(), name  # the lists are not trivially empty


def test_spark_snapshot_has_the_local_version(spark, tmp_path):
    edges = random_edges(2)
    local = run_expansion(edges, NUM_USERS, NUM_AUTHORS, CONFIG, tmp_path / "local", progress=False)
    remote = run_expansion_spark(edges, NUM_USERS, NUM_AUTHORS, CONFIG, tmp_path / "spark", master="local[1]")
    assert remote.version == local.version
    assert spark.range(3).count() == 3  # the active session was used and left running
    with pytest.raises(ValueError, match="reserved"):
        from recsys.mmbee.graph.spark import spark_metapath_neighbours

        spark_metapath_neighbours(spark, {"user": [0], "author": [1], "gifts": [1.0]}, NUM_USERS, NUM_AUTHORS)
