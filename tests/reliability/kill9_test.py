"""Random `kill -9` of a real server process while its jobs run: nothing lost, nothing duplicated, no job failed
only because the server died (bounded: 20 kills per service in `make test`; long: 200 in `make reliability`).

Each kill lands at a random moment; the server then restarts on the same data directory, the client retries every
request with its request_id (AIP-155), and at the end every job must have SUCCEEDED exactly once: one operation
per request_id, artifacts whose bytes match their recorded sha256 (video) or the deterministic output (masks)."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from kmono.masks.v1 import masks_pb2
from kmono.video.v1 import video_pb2, video_pb2_grpc

from tests.reliability.harness import (
    HERE,
    SERVICES,
    ServerProcess,
    create,
    free_port,
    report,
    running_jobs,
    scaled,
    wait_for_a_running_job,
)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_random_kill_9_loses_and_duplicates_nothing(tmp_path, service):
    kills, first_jobs = scaled(20, 200), 4
    rng = random.Random(f"kill9-{service}")
    runs_log = tmp_path / "runs.txt"
    server = ServerProcess(
        argv=[str(HERE / "fake_servers.py"), service, "--delay", "0.05", "--runs-log", str(runs_log), "--",
              "--data-dir", str(tmp_path), "--max-queued-jobs", str(first_jobs + kills + 1)],
        port=free_port(),
        log=tmp_path / "server.log",
        service=SERVICES[service],
    )  # fmt: skip
    db = tmp_path / service / "operations.sqlite"
    mid_job = 0
    try:
        channel = server.start()
        names = {i: create(channel, service, i).name for i in range(first_jobs)}
        for _ in range(kills):
            wait_for_a_running_job(db)
            time.sleep(rng.uniform(0.0, 0.5))  # a job takes 10 steps of 0.05 s: kill it somewhere inside
            server.kill9()
            mid_job += running_jobs(db) > 0
            channel = server.start()
            for i in rng.sample(sorted(names), k=3):  # clients retry with their request_id
                assert create(channel, service, i).name == names[i], "a retry made a second operation"
            names[len(names)] = create(channel, service, len(names)).name  # and new work keeps arriving
        jobs = len(names)
        operations = operations_pb2_grpc.OperationsStub(channel)
        finals = {}
        for i, name in names.items():
            request = operations_pb2.WaitOperationRequest(name=name)
            request.timeout.FromSeconds(60)
            op = operations.WaitOperation(request, timeout=120)
            while not op.done:
                op = operations.WaitOperation(request, timeout=120)
            finals[i] = op
        listed = operations.ListOperations(operations_pb2.ListOperationsRequest(page_size=1000), timeout=30)
    finally:
        server.stop()

    failed = {i: op.error.message for i, op in finals.items() if op.HasField("error")}
    listed_names = [op.name for op in listed.operations]
    lost = len(set(names.values()) - set(listed_names))
    duplicated = len(listed_names) - len(set(names.values()) & set(listed_names))
    runs = runs_log.read_text().splitlines() if runs_log.exists() else []
    report(f"kill -9 [{service}]: kills (mid-job)", f"{kills} ({mid_job})")
    report(
        f"kill -9 [{service}]: jobs lost / duplicated / failed",
        f"{lost} / {duplicated} / {len(failed)}",
    )
    report(f"kill -9 [{service}]: engine runs per job (mean)", f"{len(runs) / jobs:.2f}")
    assert not failed, f"jobs failed although only the server died: {failed}"
    assert lost == 0 and duplicated == 0, f"{lost} operations lost, {duplicated} extra"
    assert mid_job >= kills // 2, "too few kills landed while a job ran: the test did not test"
    for op in finals.values():
        assert op.HasField("response")
        if service == "video":
            response = video_pb2.CreateVideoResponse()
            op.response.Unpack(response)
            stub = video_pb2_grpc.VideoGenerationServiceStub(
                server.start() if server.channel is None else server.channel
            )
            for artifact in response.artifacts:
                data = b"".join(
                    c.chunk
                    for c in stub.DownloadArtifact(
                        video_pb2.DownloadArtifactRequest(artifact_name=artifact.name), timeout=30
                    )
                )
                assert hashlib.sha256(data).hexdigest() == artifact.sha256
        else:
            response = masks_pb2.ExtractMasksResponse()
            op.response.Unpack(response)
            assert response.mask_sequence.num_frames == 8
    server.stop()
