"""What the reliability suite shares: real server processes (started, health-checked, killed), the suite's mode
(bounded in `make test`, long in `make reliability`) and the figures every test reports to the final table."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.longrunning import operations_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.media import encode_video
from services import SERVICE_FULL_NAMES

HERE = Path(__file__).resolve().parent
LONG = os.environ.get("KMONO_RELIABILITY", "").lower() == "long"
"""`make reliability` sets KMONO_RELIABILITY=long: the same tests with the issue's long-mode counts."""


def scaled(bounded: int, long: int) -> int:
    """A count for the current mode."""
    return long if LONG else bounded


FIGURES: dict[str, str] = {}
"""Figure name -> value, printed as one table at the end of the run (conftest.py)."""


def report(name: str, value: object) -> None:
    FIGURES[name] = str(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """One service process on a loopback port; `channel` once it is SERVING."""

    argv: Sequence[str]
    port: int
    log: Path
    service: str
    process: subprocess.Popen | None = None
    channel: grpc.Channel | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 120.0) -> grpc.Channel:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path), **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.argv, "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        wait_serving(self.channel, self.service, self.process, timeout)
        return self.channel

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.close_channel()

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.close_channel()
        return code

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.close_channel()


def wait_serving(channel: grpc.Channel, service: str, process: subprocess.Popen, timeout: float) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, (
            f"the {service} server exited while starting (code {process.returncode})"
        )
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, f"the {service} server did not become SERVING in {timeout:g} s"
        time.sleep(0.05)


# -- the long-running services' jobs -------------------------------------------------------------------------

SERVICES = {name: SERVICE_FULL_NAMES[name] for name in ("video", "masks")}
"""The services with long-running jobs (what kill -9, back-pressure and cancels apply to)."""


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
