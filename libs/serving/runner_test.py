"""The process path: a real server process, SIGTERM, graceful exit with status 0."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.serving.config import ServerConfig
from libs.serving.runner import serve
from libs.serving.testing import ECHO_SERVICE, echo_registration, run_async

REPO_ROOT = Path(__file__).absolute().parents[2]  # not resolved: under Bazel this is the runfiles tree
GRACE_SECONDS = 30  # generous: the check is that the server exits when its RPCs finish, not at the grace


class _ServerProcess:
    """`python -m libs.serving.testing.echo_server` with its stderr collected on a thread."""

    def __init__(self):
        env = {
            **os.environ,
            # the child imports exactly what this process can (venv, Bazel runfiles, repo root)
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, sys.path)]),
            "KMONO_HOST": "127.0.0.1",
            "KMONO_PORT": "0",
            "KMONO_GRACE_SECONDS": str(GRACE_SECONDS),
            "KMONO_LOG_LEVEL": "INFO",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "libs.serving.testing.echo_server"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            if "serving on" in line:
                self._serving.set()

    def port(self, timeout=10.0) -> int:
        assert self._serving.wait(timeout), "server did not start:\n" + "".join(self.lines)
        (line,) = [line for line in self.lines if "serving on" in line]
        return int(re.search(r"serving on 127\.0\.0\.1:(\d+)", line).group(1))

    def output(self) -> str:
        self._reader.join(timeout=5)
        return "".join(self.lines)


def test_sigterm_drains_in_flight_rpc_and_exits_zero():
    server = _ServerProcess()
    try:
        port = server.port()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stream = channel.unary_stream(f"/{ECHO_SERVICE}/Countdown")(b"0.5", timeout=10)
            assert next(stream) == b"started"  # the RPC is in flight on the server

            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert list(stream) == [b"done"]  # it is allowed to finish
            exit_code = server.process.wait(timeout=GRACE_SECONDS + 5)
            elapsed = time.monotonic() - started
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=5)
    output = server.output()
    assert exit_code == 0, output
    assert elapsed < GRACE_SECONDS, output
    phases = ["SIGTERM received", "health NOT_SERVING", "gRPC server stopped", "shutdown complete", "exiting"]
    positions = [output.find(phase) for phase in phases]
    assert -1 not in positions and positions == sorted(positions), output
    assert "Traceback" not in output, output


def _serve_and_signal(signum, *, hang_in_startup):
    """Run `serve` in this process, send `signum` to ourselves once startup began; returns hook events."""
    events = []
    startup_began = asyncio.Event()

    async def startup():
        events.append("startup")
        startup_began.set()
        if hang_in_startup:
            await asyncio.sleep(60)  # e.g. a model that takes minutes to load

    async def shutdown():
        events.append("shutdown")

    async def scenario():
        config = ServerConfig(host="127.0.0.1", port=0, grace_seconds=1)
        serving = asyncio.ensure_future(
            serve(config, [echo_registration()], on_startup=[startup], on_shutdown=[shutdown])
        )
        await startup_began.wait()
        await asyncio.sleep(0.05)  # let start() finish when it does not hang
        os.kill(os.getpid(), signum)
        await serving

    run_async(scenario())
    return events


def test_sigint_in_process_stops_serve_and_runs_shutdown_hooks():
    assert _serve_and_signal(signal.SIGINT, hang_in_startup=False) == ["startup", "shutdown"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are removed again


def test_signal_during_slow_startup_abandons_it_and_cleans_up():
    assert _serve_and_signal(signal.SIGTERM, hang_in_startup=True) == ["startup", "shutdown"]
