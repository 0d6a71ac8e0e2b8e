"""The metapath expansion on Apache Spark, for interaction graphs beyond one machine; identical lists to the
local job (`metapath_neighbours`).

    spark = spark_session("yarn")                                           # or any SparkSession
    edges = spark.read.parquet("hdfs:///gifts/2026-12-06")                  # user, author, gifts
    lists = spark_metapath_neighbours(spark, edges, num_users, num_authors, ExpansionConfig(k=10))
    snapshot = expand_on_spark(spark, edges, num_users, num_authors, config, "snapshots/graph-v1")
    # or keep the lists distributed:
    candidates = spark_candidates(edge_frame(spark, edges).cache(), config)   # name -> (src, dst, score)
    spark_top_k(candidates["u2a2u"], k=10).write.parquet("hdfs:///graph/u2a2u")   # (src, indices, scores)

How it runs. The sums are DataFrame joins and aggregations (the parts that grow with the number of user
pairs); the ranking is the local per-batch function:
- E = edges with gifts > 0, duplicate (user, author) pairs summed;
- Swing: E joined with itself on the author gives the user pairs (u < v) with their shared authors; per pair
  count c = |I_u & I_v| and the list of shared authors, weight 2 w_u w_v / (alpha + c) with
  w_u = (beta + |I_u|) ** -gamma; every ordered pair (i, j), i != j, of a pair's list receives the weight; sum;
- u2a2u: E joined with E on the author, u != v, sum of products (R R^T);  u2a2u2a: that joined with E on v,
  summed per (u, j), minus the authors u has (left anti join);  u2a2a: E joined with S on the author (R S);
  a2a: S;  a2u2a: E joined with E on the user, i != j (R^T R);
- each candidate frame (src, dst, score) is hash-partitioned by src and every partition ranks its rows with
  `top_k_rows` (the same code as the local job: scores rounded to `score_bits`, score desc, id asc, pad 0).

Why the lists are identical to the local job's: both compute the same sums of the same float64 terms; Spark
adds them in another order (shuffles), and its `pow` (Java) may differ from numpy's in the last bit, so the
float64 results can differ by a few ulps (measured on the 40-user test graph: 21 to 178 of the 102 to 1086
candidate scores per metapath were not bit-equal to the local products). `top_k_rows` rounds every score to 2**-30 relative before ranking and
reports the rounded value, which absorbs those differences (a sum within ~1e-16 of a rounding boundary could
still round apart, about 1e-6 per score; see metapaths.py). Ties are broken by id on both sides.

GraphCL stays local (`expand_on_spark` trains it on the driver): it is a torch training loop over the whole
graph, best on one GPU, and Theta (N x d) is small next to the user pairs Spark is here for.

On a cluster: ship the code (`zip -qr /tmp/kmono.zip recsys libs`; `--py-files /tmp/kmono.zip`) and the
environment (numpy, scipy, pyarrow on the executors; torch only on the driver, for GraphCL), and raise
`spark.sql.shuffle.partitions` with the graph.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys.mmbee.graph.config import ExpansionConfig, SwingConfig
from recsys.mmbee.graph.metapaths import Neighbours, top_k_rows

logger = logging.getLogger(__name__)

_USER_SIDE = ("u2a2u", "u2a2u2a", "u2a2a")  # recsys.data.batches.USER_METAPATHS (not imported: torch)


def spark_session(
    master: str = "local[2]", app_name: str = "kmono-graph", shuffle_partitions: int = 8
) -> Any:
    """A SparkSession on `master` with few shuffle partitions (the default 200 only pays on big graphs). A local
    one runs its Python workers on this interpreter and its JVM with C1 only and the serial GC (as
    `libs.encoders.spark.spark_session`, which we do not import: it loads torch)."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    )
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return builder.getOrCreate()


def edge_frame(spark: Any, edges: Any) -> Any:
    """E: a DataFrame (user long, author long, w double) with gifts > 0 and duplicate pairs summed. `edges` is a
    DataFrame with user, author, gifts columns, a pyarrow Table or a mapping of arrays (small graphs, tests)."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    if not isinstance(edges, DataFrame):
        from recsys.mmbee.graph.expand import edge_arrays

        users, authors, gifts = edge_arrays(edges)
        schema = StructType(
            [
                StructField("user", LongType()),
                StructField("author", LongType()),
                StructField("gifts", DoubleType()),
            ]
        )
        rows = list(zip(users.tolist(), authors.tolist(), gifts.tolist(), strict=True))
        edges = spark.createDataFrame(rows, schema)
    return (
        edges.select(
            F.col("user").cast("long"), F.col("author").cast("long"), F.col("gifts").cast("double").alias("w")
        )
        .where(F.col("w") > 0)
        .groupBy("user", "author")
        .agg(F.sum("w").alias("w"))
    )


def spark_swing(edges: Any, config: SwingConfig | None = None) -> Any:
    """Swing of the authors of the edge frame E (`edge_frame`): a DataFrame (src, dst, score) of the positive
    off-diagonal entries of S, both (i, j) and (j, i)."""
    from pyspark.sql import functions as F

    config = config or SwingConfig()
    degree = edges.groupBy("user").agg(F.count("*").alias("degree"))
    weight = degree.select("user", F.pow(F.lit(config.beta) + F.col("degree"), -config.gamma).alias("wu"))
    a, b = edges.alias("a"), edges.alias("b")
    pairs = (
        a.join(b, F.col("a.author") == F.col("b.author"))
        .where(F.col("a.user") < F.col("b.user"))
        .select(F.col("a.user").alias("u"), F.col("b.user").alias("v"), F.col("a.author").alias("author"))
        .groupBy("u", "v")
        .agg(F.count("*").alias("shared"), F.collect_list("author").alias("authors"))
    )
    wu, wv = weight.alias("wu_"), weight.select(F.col("user").alias("v"), F.col("wu").alias("wv"))
    pairs = (
        pairs.join(wu, F.col("u") == F.col("wu_.user"))
        .join(wv, "v")
        .select(
            "authors",
            (F.lit(2.0) * F.col("wu") * F.col("wv") / (F.lit(config.alpha) + F.col("shared"))).alias("pw"),
        )
    )
    return (
        pairs.select(F.explode("authors").alias("src"), "authors", "pw")
        .select("src", F.explode("authors").alias("dst"), "pw")
        .where(F.col("src") != F.col("dst"))
        .groupBy("src", "dst")
        .agg(F.sum("pw").alias("score"))
    )


def spark_candidates(e: Any, config: ExpansionConfig | None = None) -> dict[str, Any]:
    """Per metapath, the DataFrame (src, dst, score) of every positive entry of its score matrix, with the
    self/own-author exclusions already applied (see the module docstring). `e` is the edge frame E
    (`edge_frame`; cache it, every metapath reads it)."""
    from pyspark.sql import functions as F

    config = config or ExpansionConfig()
    similarity = spark_swing(e, config.swing).cache()
    a, b = e.alias("a"), e.alias("b")
    co_users = (
        a.join(b, F.col("a.author") == F.col("b.author"))
        .where(F.col("a.user") != F.col("b.user"))
        .groupBy(F.col("a.user").alias("src"), F.col("b.user").alias("dst"))
        .agg(F.sum(F.col("a.w") * F.col("b.w")).alias("score"))
    ).cache()
    owned = e.select(F.col("user").alias("src"), F.col("author").alias("dst"))
    second_hop = (
        co_users.alias("m")
        .join(e.alias("e"), F.col("m.dst") == F.col("e.user"))
        .groupBy(F.col("m.src").alias("src"), F.col("e.author").alias("dst"))
        .agg(F.sum(F.col("m.score") * F.col("e.w")).alias("score"))
        .join(owned, ["src", "dst"], "left_anti")
    )
    similar_authors = (
        e.alias("e")
        .join(similarity.alias("s"), F.col("e.author") == F.col("s.src"))
        .groupBy(F.col("e.user").alias("src"), F.col("s.dst").alias("dst"))
        .agg(F.sum(F.col("e.w") * F.col("s.score")).alias("score"))
    )
    co_authors = (
        a.join(b, F.col("a.user") == F.col("b.user"))
        .where(F.col("a.author") != F.col("b.author"))
        .groupBy(F.col("a.author").alias("src"), F.col("b.author").alias("dst"))
        .agg(F.sum(F.col("a.w") * F.col("b.w")).alias("score"))
    )
    return {
        "u2a2u": co_users,
        "u2a2u2a": second_hop,
        "u2a2a": similar_authors,
        "a2a": similarity,
        "a2u2a": co_authors,
    }


def top_k_partition(rows: Iterator[Any], *, k: int, score_bits: int) -> Iterator[tuple[int, list, list]]:
    """Spark partition function: (src, dst, score) rows, all of a src in this partition -> (src, ids, scores)
    per src, ranked by the local job's `top_k_rows`."""
    triples = [(int(r[0]), int(r[1]), float(r[2])) for r in rows]
    if not triples:
        return
    src, dst, score = (np.array(column) for column in zip(*triples, strict=True))
    sources, row = np.unique(src, return_inverse=True)  # local row per src
    matrix = sp.csr_matrix((score.astype(np.float64), (row, dst)), shape=(len(sources), int(dst.max()) + 1))
    indices, scores = top_k_rows(matrix, k, score_bits=score_bits)
    yield from zip(sources.tolist(), indices.tolist(), scores.tolist(), strict=True)


def spark_top_k(candidates: Any, k: int, score_bits: int = 30, num_partitions: int | None = None) -> Any:
    """The top-`k` lists of a candidate frame (src, dst, score): a DataFrame (src long, indices array<long>,
    scores array<float>), one row per src that has candidates (padded with 0 like the local job)."""
    from pyspark.sql.types import ArrayType, FloatType, LongType, StructField, StructType

    spark = candidates.sparkSession
    partitions = num_partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    ranked = (
        candidates.select("src", "dst", "score")
        .repartition(partitions, "src")
        .rdd.mapPartitions(functools.partial(top_k_partition, k=k, score_bits=score_bits))
    )
    schema = StructType(
        [
            StructField("src", LongType()),
            StructField("indices", ArrayType(LongType())),
            StructField("scores", ArrayType(FloatType())),
        ]
    )
    return spark.createDataFrame(ranked, schema)


def check_ids(edges: Any, num_users: int, num_authors: int) -> None:
    """Refuse ids outside 1..num_users / 1..num_authors in the edge frame E (0 is the reserved unknown)."""
    from pyspark.sql import functions as F

    low_user, high_user, low_author, high_author = edges.agg(
        F.min("user"), F.max("user"), F.min("author"), F.max("author")
    ).first()
    if low_user is not None and (low_user < 1 or high_user > num_users):
        raise ValueError(f"users: ids must be in 1..{num_users} (0 is reserved), got {low_user}..{high_user}")
    if low_author is not None and (low_author < 1 or high_author > num_authors):
        raise ValueError(
            f"authors: ids must be in 1..{num_authors} (0 is reserved), got {low_author}..{high_author}"
        )


def collect_neighbours(
    candidates: Mapping[str, Any], num_users: int, num_authors: int, config: ExpansionConfig
) -> Neighbours:
    """Rank every candidate frame on Spark (`spark_top_k`) and collect the lists on the driver as
    (indices int64 [N+1, K], scores float32 [N+1, K]) per metapath."""
    out: Neighbours = {}
    for name, frame in candidates.items():
        rows = num_users + 1 if name in _USER_SIDE else num_authors + 1
        indices = np.zeros((rows, config.k), dtype=np.int64)
        scores = np.zeros((rows, config.k), dtype=np.float32)
        for src, ids, values in spark_top_k(frame, config.k, config.score_bits).rdd.toLocalIterator():
            indices[src] = ids
            scores[src] = values
        out[name] = (indices, scores)
        logger.info("spark: %s ranked", name)
    return out


def spark_metapath_neighbours(
    spark: Any, edges: Any, num_users: int, num_authors: int, config: ExpansionConfig | None = None
) -> Neighbours:
    """The five lists of `metapath_neighbours`, computed on Spark and collected on the driver as
    (indices int64 [N+1, K], scores float32 [N+1, K]); identical to the local job's (module docstring)."""
    config = config or ExpansionConfig()
    frame = edge_frame(spark, edges).cache()
    check_ids(frame, num_users, num_authors)
    return collect_neighbours(spark_candidates(frame, config), num_users, num_authors, config)


def expand_on_spark(
    spark: Any,
    edges: Any,
    num_users: int,
    num_authors: int,
    config: ExpansionConfig | None,
    out_dir: str | os.PathLike,
    extra_tables: Mapping[str, tuple[pa.Table, str]] | None = None,
    *,
    metadata: Mapping | None = None,
) -> Any:
    """`run_expansion` with the metapath lists from Spark and GraphCL on the driver: the same snapshot (same
    version) as the local job for the same edges and config."""
    from recsys.mmbee.graph.expand import write_expansion
    from recsys.mmbee.graph.graphcl import train_graphcl
    from recsys.mmbee.graph.metapaths import gift_matrix

    config = config or ExpansionConfig()
    frame = edge_frame(spark, edges).cache()
    check_ids(frame, num_users, num_authors)
    candidates = spark_candidates(frame, config)
    neighbours = collect_neighbours(candidates, num_users, num_authors, config)
    swing_pairs = candidates["a2a"].count()
    collected = frame.select("user", "author", "w").collect()  # GraphCL needs the whole graph on the driver
    columns = [np.array([row[i] for row in collected]) for i in range(3)]
    matrix = gift_matrix(*columns, num_users, num_authors)
    theta = train_graphcl(
        matrix, config.graphcl, user_positives=neighbours["u2a2u"][0], author_positives=neighbours["a2u2a"][0]
    )
    sizes = {
        "num_users": num_users,
        "num_authors": num_authors,
        "num_edges": matrix.nnz,
        "swing_pairs": swing_pairs,
    }
    return write_expansion(out_dir, neighbours, theta, config, sizes, extra_tables, metadata)
