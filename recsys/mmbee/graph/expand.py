"""MMBee's offline graph expansion job: gift edges -> Swing, the five metapath lists, GraphCL Theta -> a snapshot.

    snapshot = run_expansion(edges, num_users, num_authors, ExpansionConfig(k=10), "snapshots/graph-v1")
    snapshot.array("neighbours_u2a2u")[batch.users]    # training gathers [B, K] (what GTRBatch.neighbours holds)
    snapshot.lookup("neighbours", "user:42")           # serving: one row with every list of that node

    run_expansion_spark(edges, num_users, num_authors, config, out, master="yarn")   # same snapshot, on Spark
    python -m recsys.mmbee.graph.expand edges.parquet --num-users 5000 --num-authors 500 --out snapshots/graph-v1

What the snapshot (`recsys.features.Snapshot`) holds:
- table `neighbours`, key `f"{node_type}:{node}"` ("user:1".."user:U", "author:1".."author:A"): columns
  `node_type`, `node`, and per metapath `<name>` (list<int64>, K ids padded with 0) and `<name>_scores`
  (list<float32>); a node only has the lists of its side (`USER_METAPATHS` / `AUTHOR_METAPATHS`), the others
  are null. The unknown index 0 has no row: a lookup gives None, and serving pads with zeros like row 0.
- arrays `neighbours_<name>` int64 [N+1, K] and `neighbour_scores_<name>` float32 [N+1, K] (row 0: padding),
  `theta_users` float32 [U+1, d] and `theta_authors` float32 [A+1, d] (row 0: zeros);
- metadata: sizes, K, the metapaths' target id spaces, the whole `ExpansionConfig`, GraphCL's first and last loss.
  No wall-clock times, so the same edges and config give the same snapshot version.

Edges are (user, author, gifts) with ids 1..U / 1..A (0 is reserved); duplicate pairs are summed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.batches import AUTHOR_METAPATHS, METAPATH_TARGET, METAPATHS, USER_METAPATHS
from recsys.features.snapshot import Snapshot, SnapshotWriter
from recsys.mmbee.graph.config import ExpansionConfig
from recsys.mmbee.graph.graphcl import GraphCLResult, train_graphcl
from recsys.mmbee.graph.metapaths import Neighbours, gift_matrix, metapath_neighbours
from recsys.mmbee.graph.swing import swing

logger = logging.getLogger(__name__)

EDGE_COLUMNS = ("user", "author", "gifts")
NEIGHBOURS_TABLE = "neighbours"


def edge_arrays(edges: pa.Table | Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user int64, author int64, gifts float64) arrays of a pyarrow table or a mapping of arrays."""
    columns = edges.column_names if isinstance(edges, pa.Table) else list(edges)
    missing = [c for c in EDGE_COLUMNS if c not in columns]
    if missing:
        raise KeyError(f"edges: missing columns {missing} (expected {EDGE_COLUMNS})")

    def column(name: str, dtype) -> np.ndarray:
        value = edges.column(name).to_numpy() if isinstance(edges, pa.Table) else edges[name]
        return np.asarray(value, dtype=dtype)

    return column("user", np.int64), column("author", np.int64), column("gifts", np.float64)


def neighbours_table(neighbours: Neighbours, num_users: int, num_authors: int) -> pa.Table:
    """The serving table: one row per known user and author with the padded lists of its side (see above)."""
    k = next(iter(neighbours.values()))[0].shape[1]
    ids_type, scores_type = pa.list_(pa.int64()), pa.list_(pa.float32())

    def lists(values: np.ndarray, value_type: pa.DataType) -> pa.Array:
        offsets = pa.array(np.arange(0, values.size + 1, k, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=value_type))

    parts = []
    for node_type, count, own in (
        ("user", num_users, USER_METAPATHS),
        ("author", num_authors, AUTHOR_METAPATHS),
    ):
        nodes = np.arange(1, count + 1, dtype=np.int64)
        columns: dict[str, pa.Array] = {
            "key": pa.array([f"{node_type}:{n}" for n in nodes], type=pa.string()),
            "node_type": pa.array([node_type] * count, type=pa.string()),
            "node": pa.array(nodes),
        }
        for name in METAPATHS:
            if name in own:
                indices, scores = neighbours[name]
                columns[name] = lists(indices[1:], pa.int64())
                columns[f"{name}_scores"] = lists(scores[1:], pa.float32())
            else:
                columns[name] = pa.nulls(count, ids_type)
                columns[f"{name}_scores"] = pa.nulls(count, scores_type)
        parts.append(pa.table(columns))
    return pa.concat_tables(parts).combine_chunks()


def run_expansion(
    edges: pa.Table | Mapping[str, np.ndarray],
    num_users: int,
    num_authors: int,
    config: ExpansionConfig | None,
    out_dir: str | os.PathLike,
    extra_tables: Mapping[str, tuple[pa.Table, str]] | None = None,
    *,
    metadata: Mapping | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Snapshot:
    """Compute Swing, the five metapath lists and GraphCL Theta from `edges` and write them (plus
    `extra_tables`: name -> (table, key column)) as a new snapshot at `out_dir`; returns it opened. GraphCL
    trains on `device` (e.g. "cuda")."""
    config = config or ExpansionConfig()
    users, authors, gifts = edge_arrays(edges)
    matrix = gift_matrix(users, authors, gifts, num_users, num_authors)  # [U+1, A+1]
    timings = {}
    began = time.perf_counter()
    similarity = swing(matrix, config.swing)  # [A+1, A+1]
    timings["swing"] = time.perf_counter() - began
    began = time.perf_counter()
    neighbours = metapath_neighbours(matrix, similarity, config, progress=progress)
    timings["metapaths"] = time.perf_counter() - began
    began = time.perf_counter()
    theta = train_graphcl(
        matrix,
        config.graphcl,
        user_positives=neighbours["u2a2u"][0],
        author_positives=neighbours["a2u2a"][0],
        device=device,
        progress=progress,
    )
    timings["graphcl"] = time.perf_counter() - began
    logger.info(
        "expansion: %d edges; swing %.2fs, metapaths %.2fs, graphcl %.2fs",
        matrix.nnz,
        timings["swing"],
        timings["metapaths"],
        timings["graphcl"],
    )
    return write_expansion(
        out_dir,
        neighbours,
        theta,
        config,
        {
            "num_users": num_users,
            "num_authors": num_authors,
            "num_edges": int(matrix.nnz),
            "swing_pairs": int(similarity.nnz),
        },
        extra_tables,
        metadata,
    )


def write_expansion(
    out_dir: str | os.PathLike,
    neighbours: Neighbours,
    theta: GraphCLResult,
    config: ExpansionConfig,
    sizes: Mapping[str, int],
    extra_tables: Mapping[str, tuple[pa.Table, str]] | None = None,
    metadata: Mapping | None = None,
) -> Snapshot:
    """Write the expansion's results as a new snapshot (the layout in the module docstring); shared by the local
    and the Spark job, so equal results give equal snapshot versions whichever engine computed them.
    `sizes`: num_users, num_authors, num_edges, swing_pairs."""
    with SnapshotWriter(out_dir) as writer:
        table = neighbours_table(neighbours, sizes["num_users"], sizes["num_authors"])
        writer.add_table(NEIGHBOURS_TABLE, table, key="key")
        for name, (indices, scores) in neighbours.items():
            writer.add_array(f"neighbours_{name}", indices)
            writer.add_array(f"neighbour_scores_{name}", scores)
        writer.add_array("theta_users", theta.theta_users)
        writer.add_array("theta_authors", theta.theta_authors)
        for name, (extra, key) in (extra_tables or {}).items():
            writer.add_table(name, extra, key=key)
        return writer.commit(
            {
                "job": "mmbee-graph-expansion",
                **{name: int(value) for name, value in sizes.items()},
                "k": config.k,
                "metapaths": {name: METAPATH_TARGET[name] for name in METAPATHS},
                "config": dataclasses.asdict(config),
                "graphcl_loss": [theta.losses[0], theta.losses[-1]] if theta.losses else [],
                **dict(metadata or {}),
            }
        )


def run_expansion_spark(
    edges: Any,
    num_users: int,
    num_authors: int,
    config: ExpansionConfig | None,
    out_dir: str | os.PathLike,
    extra_tables: Mapping[str, tuple[pa.Table, str]] | None = None,
    *,
    master: str = "local[*]",
    metadata: Mapping | None = None,
) -> Snapshot:
    """`run_expansion` with the metapath lists computed on Spark (`recsys.mmbee.graph.spark.expand_on_spark`):
    the same snapshot, same version. Uses the active SparkSession if there is one (and leaves it running), else
    starts one on `master` and stops it at the end. `edges` may also be a Spark DataFrame."""
    from pyspark.sql import SparkSession

    from recsys.mmbee.graph.spark import expand_on_spark, spark_session

    active = SparkSession.getActiveSession()
    spark = active or spark_session(master)
    try:
        return expand_on_spark(
            spark, edges, num_users, num_authors, config, out_dir, extra_tables, metadata=metadata
        )
    finally:
        if active is None:
            spark.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m recsys.mmbee.graph.expand EDGES.parquet --num-users U --num-authors A --out DIR`."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.mmbee.graph.expand", description=__doc__.split("\n")[0]
    )
    parser.add_argument("edges", help="Parquet file with user, author, gifts columns (ids 1..N)")
    parser.add_argument("--num-users", type=int, required=True)
    parser.add_argument("--num-authors", type=int, required=True)
    parser.add_argument("--out", required=True, help="new snapshot directory")
    parser.add_argument("--k", type=int, default=ExpansionConfig.k)
    parser.add_argument("--graphcl-epochs", type=int, default=ExpansionConfig().graphcl.epochs)
    parser.add_argument("--device", default="cpu", help="where GraphCL trains (cpu, cuda, cuda:1, ...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = ExpansionConfig()
    config = dataclasses.replace(
        base, k=args.k, graphcl=dataclasses.replace(base.graphcl, epochs=args.graphcl_epochs)
    )
    snapshot = run_expansion(
        pq.read_table(args.edges, columns=list(EDGE_COLUMNS)),
        args.num_users,
        args.num_authors,
        config,
        args.out,
        device=args.device,
    )
    logger.info("wrote %s", snapshot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
