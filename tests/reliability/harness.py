"""What the reliability suite shares: real server processes (started, health-checked, killed), the suite's mode
(bounded in `make test`, long in `make reliability`) and the figures every test reports to the final table."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
