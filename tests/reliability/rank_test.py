"""The RankingService under pressure, as a real server process with a real (tiny, trained) MMBee folder:

- overload: more concurrent 500-candidate requests than `--max-concurrent-rpcs` allows -> the excess is
  RESOURCE_EXHAUSTED, never INTERNAL, and the server answers normally afterwards;
- concurrency: requests scored at the same time get exactly the scores they get one by one;
- restarts: after kill -9 and a restart the same request gets the same scores (nothing is lost: the service
  keeps no state beyond its model folder);
- hostile requests beyond the fuzz test's: 500 candidates of cold-start ids, megabyte ids, oversized tensors.
Bounded: 24 concurrent calls, 2 restarts; long (`make reliability`): 400 and 20.
"""

from __future__ import annotations

import concurrent.futures

import grpc
import numpy as np
import pytest
from kmono.common.v1 import tensor_pb2
from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

from recsys.mmbee.testing import tiny_model_folder
from services import SERVICE_FULL_NAMES
from tests.reliability.harness import ServerProcess, free_port, report, scaled

SERVICE = SERVICE_FULL_NAMES["rank"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("rank-reliability") / "model"
    tiny_model_folder(path)
    return path


def server(folder, tmp_path, *flags: str) -> ServerProcess:
    argv = ["-m", "services.rank", "--model", str(folder), "--torch-threads", "1", *flags]
    return ServerProcess(argv=argv, port=free_port(), log=tmp_path / "rank.log", service=SERVICE)


def big_request(user: str, count: int = 500) -> rank_pb2.RankCandidatesRequest:
    request = rank_pb2.RankCandidatesRequest(user_id=user)
    request.candidates.extend(
        rank_pb2.Candidate(stream_id=f"s{i}", author_id=f"a{i % 30}") for i in range(count)
    )
    return request


def scores(reply: rank_pb2.RankCandidatesResponse) -> dict[str, float]:
    return {c.stream_id: c.gtr_score for c in reply.scored_candidates}


def test_overload_is_resource_exhausted_and_the_server_recovers(folder, tmp_path):
    process = server(folder, tmp_path, "--max-concurrent-rpcs", "2")
    channel = process.start()
    stub = rank_pb2_grpc.RankingServiceStub(channel)
    calls = scaled(24, 400)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = [
                pool.submit(stub.RankCandidates, big_request(f"u{i}"), timeout=60) for i in range(calls)
            ]
            codes = []
            for future in futures:
                try:
                    future.result()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert len(stub.RankCandidates(big_request("u1", 10), timeout=30).scored_candidates) == 10
        report("rank: overload answers (OK / RESOURCE_EXHAUSTED)", f"{codes.count(grpc.StatusCode.OK)} / "
               f"{codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)} of {calls}")  # fmt: skip
    finally:
        process.stop()


def test_concurrent_scores_equal_sequential_and_survive_kill9(folder, tmp_path):
    process = server(folder, tmp_path)
    users = [f"u{i}" for i in range(1, 9)] + ["never-seen"]
    try:
        stub = rank_pb2_grpc.RankingServiceStub(process.start())
        alone = {user: scores(stub.RankCandidates(big_request(user, 60), timeout=30)) for user in users}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            together = list(
                pool.map(lambda u: scores(stub.RankCandidates(big_request(u, 60), timeout=60)), users)
            )
        assert together == [alone[u] for u in users]
        restarts = scaled(2, 20)
        for _ in range(restarts):
            process.kill9()
            stub = rank_pb2_grpc.RankingServiceStub(process.start())
            assert scores(stub.RankCandidates(big_request(users[0], 60), timeout=30)) == alone[users[0]]
        report("rank: kill -9 restarts with identical scores", restarts)
    finally:
        process.stop()


def test_hostile_requests_are_answered_by_field(folder, tmp_path):
    process = server(folder, tmp_path)
    try:
        stub = rank_pb2_grpc.RankingServiceStub(process.start())
        cold = stub.RankCandidates(
            rank_pb2.RankCandidatesRequest(
                user_id="x" * 128,
                candidates=[rank_pb2.Candidate(stream_id=f"live-{i}", author_id=f"z{i}") for i in range(500)],
            ),
            timeout=60,
        )
        assert len(cold.scored_candidates) == 500 and all(
            np.isfinite(c.gtr_score) for c in cold.scored_candidates
        )
        hostile = [
            rank_pb2.RankCandidatesRequest(
                user_id="u" * 70_000, candidates=[rank_pb2.Candidate(stream_id="s", author_id="a")]
            ),
            big_request("u1", 501),
        ]
        huge = big_request("u1", 1)
        huge.candidates[0].features.embeddings["visual"].CopyFrom(
            tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, dims=[2**31, 2**31], data=b"")
        )
        hostile.append(huge)
        # a DataType number this build has no name for (proto3 enums are open)
        newer_dtype = big_request("u1", 2)
        newer_dtype.candidates[1].features.embeddings["speech"].CopyFrom(
            tensor_pb2.Tensor(dtype=len(tensor_pb2.DataType.keys()) + 3, dims=[1], data=b"\0" * 4)
        )
        hostile.append(newer_dtype)
        details = {}
        for request in hostile:
            with pytest.raises(grpc.RpcError) as error:
                stub.RankCandidates(request, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
            details[id(request)] = error.value.details()
        assert 'candidates[1].features.embeddings["speech"].dtype' in details[id(newer_dtype)]
    finally:
        process.stop()
