"""What several benchmarks share: CPU timing of in-process calls, percentiles, and a service process on loopback."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def interleaved_median_ms(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Median CPU milliseconds of each call (process time: a shared machine's other jobs do not count), timed
    in round-robin after `warmup` calls each, so that what load remains hits every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            for _ in range(warmup):
                call()
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.process_time()
                call()
                times[name].append(time.process_time() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def p50_p99(values: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(module: str, service: str, args: list[str], log_path: Path) -> tuple[subprocess.Popen, int]:
    """`python -m <module> <args>` on a free loopback port, waited for until its health check says `service`
    is SERVING (120 s at most; the log's tail is in the error otherwise)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), "--grace-seconds", "1",
             *args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    deadline = time.monotonic() + 120
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return process, port
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{module} was not SERVING after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def stop_service(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
