"""The RerankService under pressure, as a real server process with a real (tiny) Dual-Rerank model folder:

- overload: more concurrent 500-item AR requests than `--max-concurrent-rpcs` allows -> the excess is
  RESOURCE_EXHAUSTED, never INTERNAL, and the server answers normally afterwards;
- concurrency and restarts: requests reranked at the same time get exactly the pages they get one by one, and
  after kill -9 a new process answers the same request identically (the service is stateless: its answer is a
  function of the request and the model folder);
- hostile requests beyond the fuzz test's: the largest lists allowed and one over, NaN and infinite scores,
  unicode and megabyte ids, items without ids, absurd slot counts.
Bounded: 24 concurrent calls, 2 restarts; long (`make reliability`): 400 and 20.
"""

from __future__ import annotations

import concurrent.futures
import zlib

import grpc
import numpy as np
import pytest
from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

from recsys.rerank.serving.requests import MAX_ITEMS
from recsys.rerank.serving.testing import tiny_model_folder
from services import SERVICE_FULL_NAMES
from tests.reliability.harness import ServerProcess, free_port, report, scaled

SERVICE = SERVICE_FULL_NAMES["rerank"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("rerank-reliability") / "model"
    tiny_model_folder(path)
    return path


def server(folder, tmp_path, *flags: str) -> ServerProcess:
    argv = ["-m", "services.rerank", "--model", str(folder), "--torch-threads", "1", *flags]
    return ServerProcess(argv=argv, port=free_port(), log=tmp_path / "rerank.log", service=SERVICE)


def page_request(user: str, count: int = 50, slots: int = 10, **fields) -> rerank_pb2.RerankListRequest:
    rng = np.random.default_rng(zlib.crc32(user.encode()))
    request = rerank_pb2.RerankListRequest(user_id=user, num_slots=slots, **fields)
    for i, (ctr, watch) in enumerate(rng.uniform(size=(count, 2)).tolist()):
        request.items.add(item_id=f"v{i}", author_id=f"a{i % 17}", scores={"ctr": ctr, "watch_time": watch})
    return request


def page(reply: rerank_pb2.RerankListResponse) -> tuple:
    return tuple((s.item_id, s.score, s.probability) for s in reply.slots), reply.expected_utility


def test_overload_is_resource_exhausted_and_the_server_recovers(folder, tmp_path):
    process = server(folder, tmp_path, "--max-concurrent-rpcs", "2")
    stub = rerank_pb2_grpc.RerankServiceStub(process.start())
    calls = scaled(24, 400)
    heavy = page_request("u1", MAX_ITEMS, 12, decoder=rerank_pb2.DECODER_AUTOREGRESSIVE)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(stub.RerankList, heavy, timeout=60) for _ in range(calls)]
            codes = []
            for future in futures:
                try:
                    future.result()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert len(stub.RerankList(page_request("u1", 8, 4), timeout=30).slots) == 4
        report("rerank: overload answers (OK / RESOURCE_EXHAUSTED)", f"{codes.count(grpc.StatusCode.OK)} / "
               f"{codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)} of {calls}")  # fmt: skip
    finally:
        process.stop()


def test_concurrent_pages_equal_sequential_and_a_new_process_answers_identically(folder, tmp_path):
    process = server(folder, tmp_path)
    requests = [page_request(f"u{i}") for i in range(6)]
    requests += [page_request("u9", decoder=rerank_pb2.DECODER_AUTOREGRESSIVE)]
    try:
        stub = rerank_pb2_grpc.RerankServiceStub(process.start())
        alone = [page(stub.RerankList(r, timeout=30)) for r in requests]
        with concurrent.futures.ThreadPoolExecutor(max_workers=7) as pool:
            together = list(pool.map(lambda r: page(stub.RerankList(r, timeout=60)), requests))
        assert together == alone
        restarts = scaled(2, 20)
        for _ in range(restarts):
            process.kill9()
            stub = rerank_pb2_grpc.RerankServiceStub(process.start())
            assert [page(stub.RerankList(r, timeout=30)) for r in requests[:2] + requests[-1:]] == [
                alone[0],
                alone[1],
                alone[-1],
            ]
        report("rerank: kill -9 restarts with identical pages", restarts)
    finally:
        process.stop()


def test_hostile_requests_are_answered_by_field(folder, tmp_path):
    process = server(folder, tmp_path)
    try:
        stub = rerank_pb2_grpc.RerankServiceStub(process.start())
        largest = stub.RerankList(page_request("x" * 128, MAX_ITEMS, 12), timeout=60)
        assert len({s.item_id for s in largest.slots}) == 12
        unicode = page_request("观众-😀", 6, 3)
        for i, request_item in enumerate(unicode.items):
            request_item.item_id = f"视频-{i}-\u200b🎬"
            request_item.author_id = "作者" if i % 2 else ""
        answer = stub.RerankList(unicode, timeout=30)
        assert {s.item_id for s in answer.slots} <= {i.item_id for i in unicode.items}
        assert all(np.isfinite(s.score) and 0 < s.probability <= 1 for s in answer.slots)

        nan = page_request("u1", 8, 4)
        nan.items[3].scores["ctr"] = float("nan")
        infinite_weight = page_request("u1", 8, 4)
        infinite_weight.utility_options.objective_weights["ctr"] = float("inf")
        missing_id = page_request("u1", 8, 4)
        missing_id.items.add(scores={"ctr": 0.5})
        hostile = [
            (page_request("u" * 70_000, 4, 2), "user_id"),
            (page_request("u1", MAX_ITEMS + 1, 4), "items"),
            (nan, 'items[3].scores["ctr"]'),
            (infinite_weight, 'utility_options.objective_weights["ctr"]'),
            (missing_id, "items[8].item_id"),
            (page_request("u1", 8, 2**31 - 1), "num_slots"),
            (page_request("u1", 8, -(2**31)), "num_slots"),
            (rerank_pb2.RerankListRequest(), "user_id"),
        ]
        for request, field in hostile:
            with pytest.raises(grpc.RpcError) as error:
                stub.RerankList(request, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
            assert field in error.value.details()
    finally:
        process.stop()
