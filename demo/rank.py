"""The demo's ranking step: a client of the RankingService, as a live-stream feed would call it.

The candidates are the 50 broadcasts the embedded model's world saw last (what a retrieval stage would hand
over for a viewer), read from the model folder's snapshot table of streams; the viewer is a user of that world
with gifting history, then a viewer the world has never seen (the cold-start path). Prints the top 5 of each.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pyarrow.parquet as pq
from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

CANDIDATES = 50
TOP_K = 5


def live_candidates(model_dir: Path, count: int = CANDIDATES) -> list[rank_pb2.Candidate]:
    streams = pq.read_table(model_dir / "snapshot" / "streams.parquet", columns=["key", "author"])
    last = streams.slice(max(0, len(streams) - count))
    return [
        rank_pb2.Candidate(stream_id=key, author_id=f"a{author}")
        for key, author in zip(last["key"].to_pylist(), last["author"].to_pylist(), strict=True)
    ]


def a_gifting_user(model_dir: Path) -> str:
    """The stored user with the most past gifts (dense column 1 is log(1 + gifts))."""
    users = pq.read_table(model_dir / "snapshot" / "users.parquet", columns=["key", "dense"]).to_pylist()
    return max(users, key=lambda row: row["dense"][1])["key"]


def run_rank_calls(port: int, model_dir: Path) -> bool:
    candidates = live_candidates(model_dir)
    ok = True
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rank_pb2_grpc.RankingServiceStub(channel)
        for user, label in (
            (a_gifting_user(model_dir), "a frequent gifter"),
            ("viewer-new-42", "a new viewer"),
        ):
            reply = stub.RankCandidates(
                rank_pb2.RankCandidatesRequest(user_id=user, candidates=candidates, top_k=TOP_K), timeout=30
            )
            print(f"rank: {user} ({label}), {len(candidates)} live candidates, model {reply.model_version}")
            for scored in reply.scored_candidates:
                print(
                    f"  #{scored.rank}  {scored.stream_id:>9s} by {scored.author_id:>5s}  GTR {scored.gtr_score:.4f}"
                )
            scores = [s.gtr_score for s in reply.scored_candidates]
            ok &= len(scores) == TOP_K and scores == sorted(scores, reverse=True)
    return ok
