"""Random `kill -9` of a real server process while its jobs run: nothing lost, nothing duplicated, no job failed
only because the server died (bounded: 20 kills per service in `make test`; long: 200 in `make reliability`).

Each kill lands at a random moment; the server then restarts on the same data directory, the client retries every
request with its request_id (AIP-155), and at the end every job must have SUCCEEDED exactly once: one operation
per request_id, artifacts whose bytes match their recorded sha256 (video) or the deterministic output (masks)."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.media import encode_video
from tests.reliability.harness import HERE, ServerProcess, free_port, report, scaled

SERVICES = {
    "video": "kmono.video.v1.VideoGenerationService",
    "masks": "kmono.masks.v1.MaskService",
}


def tiny_mp4() -> bytes:
    import numpy as np

    return encode_video(np.full((4, 16, 16, 3), 90, np.uint8), fps=4, format="mp4")


def create(channel: grpc.Channel, service: str, index: int) -> operations_pb2.Operation:
    request_id = f"job-{index:04d}"
    if service == "video":
        request = video_pb2.CreateVideoRequest(
            prompt=f"job {index}", num_inference_steps=10, seed=index, request_id=request_id
        )
        return video_pb2_grpc.VideoGenerationServiceStub(channel).CreateVideo(request, timeout=30)
    request = masks_pb2.ExtractMasksRequest(
        video=media_pb2.MediaRef(inline_data=tiny_mp4()), text_query=f"thing {index}.", request_id=request_id
    )
    return masks_pb2_grpc.MaskServiceStub(channel).ExtractMasks(request, timeout=30)


def wait_for_a_running_job(db, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while running_jobs(db) == 0:
        assert time.monotonic() < deadline, "no job started"
        time.sleep(0.01)


def running_jobs(db) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT COUNT(*) FROM operations WHERE state = 'RUNNING'").fetchone()[0]


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
    runs = runs_log.read_text().splitlines() if runs_log.exists() else []
    report(f"kill -9 [{service}]: kills (mid-job)", f"{kills} ({mid_job})")
    report(
        f"kill -9 [{service}]: jobs lost / duplicated / failed",
        f"0 / {len(listed.operations) - jobs} / {len(failed)}",
    )
    report(f"kill -9 [{service}]: engine runs per job (mean)", f"{len(runs) / jobs:.2f}")
    assert not failed, f"jobs failed although only the server died: {failed}"
    assert len(listed.operations) == jobs, "an operation appeared twice or was lost"
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
