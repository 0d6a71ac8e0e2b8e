"""The expansion job end to end: the snapshot holds exactly the local lists and Theta, and is reproducible."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.batches import AUTHOR_METAPATHS, METAPATHS, USER_METAPATHS
from recsys.features.snapshot import Snapshot
from recsys.mmbee.graph.config import ExpansionConfig, GraphCLConfig
from recsys.mmbee.graph.expand import main, run_expansion
from recsys.mmbee.graph.metapaths import gift_matrix, metapath_neighbours

CONFIG = ExpansionConfig(k=4, graphcl=GraphCLConfig(dim=8, epochs=2, batch_size=32))
NUM_USERS, NUM_AUTHORS = 25, 8


def random_edges(seed: int = 0, n: int = 80) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "user": rng.integers(1, NUM_USERS + 1, n),
        "author": rng.integers(1, NUM_AUTHORS + 1, n),
        "gifts": rng.integers(1, 6, n).astype(float),
    }


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    extra = {"authors": (pa.table({"id": [f"author:{a}" for a in range(1, 4)], "x": [1, 2, 3]}), "id")}
    out = tmp_path_factory.mktemp("expansion") / "snap"
    return run_expansion(random_edges(), NUM_USERS, NUM_AUTHORS, CONFIG, out, extra, progress=False)


def test_arrays_are_the_local_lists(snapshot):
    edges = random_edges()
    want = metapath_neighbours(
        gift_matrix(edges["user"], edges["author"], edges["gifts"], NUM_USERS, NUM_AUTHORS), config=CONFIG
    )
    for name in METAPATHS:
        np.testing.assert_array_equal(snapshot.array(f"neighbours_{name}"), want[name][0])
        np.testing.assert_array_equal(snapshot.array(f"neighbour_scores_{name}"), want[name][1])
    theta_users, theta_authors = snapshot.array("theta_users"), snapshot.array("theta_authors")
    assert theta_users.shape == (NUM_USERS + 1, 8) and theta_authors.shape == (NUM_AUTHORS + 1, 8)
    assert not theta_users[0].any() and theta_users[1:].any()
    assert snapshot.metadata["num_edges"] == len(
        set(zip(edges["user"].tolist(), edges["author"].tolist(), strict=True))
    )
    assert snapshot.metadata["config"]["k"] == 4 and snapshot.lookup("authors", "author:2")["x"] == 2


def test_table_rows_match_the_arrays(snapshot):
    table = snapshot.table("neighbours")
    assert table.num_rows == NUM_USERS + NUM_AUTHORS
    for node_type, node, own, other in (
        ("user", 3, USER_METAPATHS, AUTHOR_METAPATHS),
        ("author", 5, AUTHOR_METAPATHS, USER_METAPATHS),
    ):
        row = snapshot.lookup("neighbours", f"{node_type}:{node}")
        assert row["node_type"] == node_type and row["node"] == node
        for name in own:
            assert row[name] == snapshot.array(f"neighbours_{name}")[node].tolist()
            assert row[f"{name}_scores"] == snapshot.array(f"neighbour_scores_{name}")[node].tolist()
        assert all(row[name] is None for name in other)
    assert snapshot.lookup("neighbours", "user:0") is None


def test_same_edges_give_the_same_version(snapshot, tmp_path):
    again = run_expansion(
        random_edges(),
        NUM_USERS,
        NUM_AUTHORS,
        CONFIG,
        tmp_path / "again",
        {"authors": (pa.table({"id": [f"author:{a}" for a in range(1, 4)], "x": [1, 2, 3]}), "id")},
        progress=False,
    )
    assert again.version == snapshot.version
    other = run_expansion(
        random_edges(seed=1), NUM_USERS, NUM_AUTHORS, CONFIG, tmp_path / "other", progress=False
    )
    assert other.version != snapshot.version


def test_command_line(tmp_path):
    pq.write_table(pa.table(random_edges()), tmp_path / "edges.parquet")
    assert (
        main(
            [
                str(tmp_path / "edges.parquet"),
                "--num-users",
                str(NUM_USERS),
                "--num-authors",
                str(NUM_AUTHORS),
                "--out",
                str(tmp_path / "snap"),
                "--k",
                "3",
                "--graphcl-epochs",
                "1",
            ]
        )
        == 0
    )
    with Snapshot.open(tmp_path / "snap") as snapshot:
        assert snapshot.array("neighbours_a2a").shape == (NUM_AUTHORS + 1, 3)
