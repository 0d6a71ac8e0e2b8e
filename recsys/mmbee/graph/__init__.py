"""MMBee's offline graph expansion: Swing item-item similarity, five metapath top-K lists, GraphCL node embeddings
and the job that writes them into a versioned snapshot (`recsys.features.Snapshot`), locally or on Spark.

    from recsys.mmbee.graph import ExpansionConfig, gift_matrix, swing, metapath_neighbours, train_graphcl

    R = gift_matrix(users, authors, gifts, num_users, num_authors)  # [U+1, A+1], row/column 0 reserved
    S = swing(R)                                                    # [A+1, A+1] author-author Swing
    lists = metapath_neighbours(R, S, ExpansionConfig(k=10))        # name -> (indices [N+1, K], scores)
    theta = train_graphcl(R)                                        # theta_users [U+1, d], theta_authors
    snapshot = run_expansion(edges, num_users, num_authors, ExpansionConfig(), "snapshots/graph-v1")

Everything takes a generic user x item matrix (MMBee: viewer x streamer gifts; MovieLens: user x movie).
On Spark (identical lists and snapshot version, GraphCL on the driver): `run_expansion_spark(edges, ...,
master="yarn")`, or `expand_on_spark(spark, edges, ...)` with your own session; see `spark.py`.
The names load on first use: `import recsys.mmbee.graph` imports neither torch nor pyspark.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["ExpansionConfig", "GraphCLConfig", "SwingConfig"],
        "expand": ["run_expansion", "run_expansion_spark", "write_expansion"],
        "graphcl": ["GraphCLResult", "train_graphcl"],
        "metapaths": ["Neighbours", "gift_matrix", "metapath_neighbours", "round_scores", "top_k_rows"],
        "spark": [
            "edge_frame",
            "expand_on_spark",
            "spark_candidates",
            "spark_metapath_neighbours",
            "spark_session",
            "spark_swing",
            "spark_top_k",
        ],
        "swing": ["swing"],
    },
)
