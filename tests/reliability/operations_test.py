"""Back-pressure, cancellation and shutdown of every long-running service, on real server processes:

- a queue of Q accepts exactly Q waiting jobs: Q + k more creates give exactly k RESOURCE_EXHAUSTED (with RetryInfo);
- 1,000 cancels (queued and running jobs) leave nothing in flight: every operation CANCELLED, the worker idle;
- SIGTERM turns health NOT_SERVING while the process still answers, then it drains and exits 0 within the grace.
"""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.reliability.harness import (
    HERE,
    SERVICES,
    ServerProcess,
    create,
    free_port,
    report,
    running_jobs,
    wait_for_a_running_job,
)

CANCELS = 1000


def fake_server(tmp_path, service: str, *flags: str, delay: float = 5.0) -> ServerProcess:
    return ServerProcess(
        argv=[
            str(HERE / "fake_servers.py"),
            service,
            "--delay",
            str(delay),
            "--",
            "--data-dir",
            str(tmp_path),
            *flags,
        ],
        port=free_port(),
        log=tmp_path / "server.log",
        service=SERVICES[service],
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_full_queue_refuses_exactly_the_overflow(tmp_path, service):
    queue, overflow = 5, 7
    server = fake_server(tmp_path, service, "--max-queued-jobs", str(queue))
    try:
        channel = server.start()
        create(channel, service, 0)  # runs (slowly), so it does not wait in the queue
        wait_for_a_running_job(tmp_path / service / "operations.sqlite")
        refused = 0
        for i in range(1, 1 + queue + overflow):
            try:
                create(channel, service, i)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                status = rpc_status.from_call(error)
                assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
                refused += 1
    finally:
        server.stop()
    report(f"back-pressure [{service}]: Q={queue}, Q+{overflow} creates -> refused", refused)
    assert refused == overflow


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_thousand_cancels_leave_nothing_in_flight(tmp_path, service):
    server = fake_server(tmp_path, service, "--max-queued-jobs", str(CANCELS + 1), delay=5.0)
    db = tmp_path / service / "operations.sqlite"
    try:
        channel = server.start()
        names = [create(channel, service, i).name for i in range(CANCELS)]
        wait_for_a_running_job(db)
        operations = operations_pb2_grpc.OperationsStub(channel)
        for name in names:
            operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name), timeout=30)
        deadline = time.monotonic() + 60
        while True:
            pending = operations.ListOperations(
                operations_pb2.ListOperationsRequest(filter="done = false", page_size=10), timeout=30
            ).operations
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        listed = operations.ListOperations(
            operations_pb2.ListOperationsRequest(page_size=CANCELS + 10), timeout=30
        ).operations
    finally:
        server.stop()
    cancelled = sum(op.error.code == grpc.StatusCode.CANCELLED.value[0] for op in listed)
    report(
        f"cancel [{service}]: cancels -> CANCELLED, still in flight",
        f"{CANCELS} -> {cancelled}, {len(pending)}",
    )
    assert not pending and running_jobs(db) == 0
    others = [(op.name, op.error.code, op.error.message, op.HasField("response")) for op in listed
              if op.error.code != grpc.StatusCode.CANCELLED.value[0]]  # fmt: skip
    assert cancelled == CANCELS, others


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_sigterm_turns_not_serving_then_drains_and_exits_0(tmp_path, service):
    grace = 5.0
    server = fake_server(tmp_path, service, "--grace-seconds", str(grace), delay=0.05)
    try:
        channel = server.start()
        create(channel, service, 0)
        health = health_pb2_grpc.HealthStub(channel)
        seen: list[tuple[float, int]] = []
        stream = health.Watch(health_pb2.HealthCheckRequest(service=SERVICES[service]), timeout=60)

        def follow() -> None:
            try:
                for answer in stream:
                    seen.append((time.monotonic(), answer.status))
            except grpc.RpcError:
                pass

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        while not seen:
            time.sleep(0.01)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(grace + 30)
        exited = time.monotonic()
        watcher.join(10)
    finally:
        server.stop()
    not_serving = [t for t, status in seen if status == health_pb2.HealthCheckResponse.NOT_SERVING]
    assert not_serving, f"health never said NOT_SERVING: {seen}"
    latency = not_serving[0] - signalled
    report(
        f"SIGTERM [{service}]: -> NOT_SERVING (goal <= 1 s), -> exit",
        f"{latency * 1000:.0f} ms, {exited - signalled:.1f} s",
    )
    assert code == 0
    assert not_serving[0] < exited
