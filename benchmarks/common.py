"""What several benchmarks share: CPU timing of in-process calls, percentiles, a service process on loopback,
and the CPU time of a call on both sides of it (client and server process), which adds up where wall time on a
shared machine does not."""

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
from typing import Any

import numpy as np
import torch


def interleaved_median_ms(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3, in_a_row: int = 1
) -> dict[str, float]:
    """Median CPU milliseconds of each call (process time: a shared machine's other jobs do not count), timed
    in round-robin after `warmup` calls each, so that what load remains hits every variant alike.

    `in_a_row` > 1 makes each turn of the round-robin that many calls of the same variant, all timed: the
    median then reads the steady state of a caller that makes only that call (its weights in the CPU caches),
    where 1 times every call right after another variant's."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            for _ in range(warmup):
                call()
        for _ in range(repeats):
            for name, call in calls.items():
                for _ in range(in_a_row):
                    start = time.process_time()
                    call()
                    times[name].append(time.process_time() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds that the threads of process `pid` have run so far (Linux `/proc/<pid>/task/*/schedstat`,
    nanosecond resolution where `/proc/<pid>/stat` counts 10 ms ticks); None where /proc has no such file."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # a thread that ended while we listed them
                continue
    except (FileNotFoundError, NotADirectoryError):
        return None
    return total / 1e9


def cpu_ms_per_call(
    calls: dict[str, Callable[[int], object]], count: int, rounds: int, server_pids: dict[str, int]
) -> dict[str, tuple[float, float | None]]:
    """(this process, its server process) CPU milliseconds per call of each of `calls`, each run as a block
    of `count` calls (`call(i)`, i < count) after 3 untimed ones, the blocks in turn, `rounds` times; the
    median over rounds. The server of a call is `server_pids[name]` (None for calls without one, or where
    /proc cannot tell). CPU time, unlike wall time, leaves out other jobs on a shared machine and adds up
    across the two processes. Server threads that end within a block take their CPU time with them (none of
    ours does)."""
    results: dict[str, list[tuple[float, float | None]]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            pid = server_pids.get(name)
            for i in range(3):
                call(i)
            server_start = process_cpu_seconds(pid) if pid else None
            start = time.process_time()
            for i in range(count):
                call(i)
            client = time.process_time() - start
            server_end = process_cpu_seconds(pid) if pid else None
            server = None if server_start is None or server_end is None else server_end - server_start
            results[name].append((1000 * client / count, None if server is None else 1000 * server / count))
    medians = {}
    for name, values in results.items():
        servers = [server for _, server in values if server is not None]
        medians[name] = (
            statistics.median(client for client, _ in values),
            statistics.median(servers) if len(servers) == len(values) else None,
        )
    return medians


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


SERVER_VARIANTS = {
    "inline": "the service's own server (libs.serving), the servicer's work run on the event loop, not handed "
    "to a worker thread",
    "bare": "a grpc.aio server without libs.serving's interceptor (cap, deadlines, error mapping, metrics, "
    "access log); the servicer unchanged",
}
"""Local copies of a service's server with one change each, served beside the real one to measure the change
(`serve_variant`); nothing in libs/ or services/ changes."""


def serve_variant(
    variant: str,
    servicer: object,
    rpc: str,
    work: Callable[[object], object],
    add_to_server: Callable[[object, object], None],
    service_name: str,
    host: str,
    port: int,
) -> None:
    """Serve `servicer` as SERVER_VARIANTS[variant] on host:port until SIGTERM, logging as a service process
    does (INFO: one access-log line per RPC through the interceptor). `rpc` is the servicer's method name and
    `work(request)` the synchronous work it hands to a worker thread (`servicer._rerank`)."""
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from libs.serving.config import ServerConfig
    from libs.serving.runner import configure_logging
    from libs.serving.server import KmonoServer, ServiceRegistration

    if variant == "inline":

        async def on_the_loop(request: object, context: object) -> object:
            return work(request)

        setattr(servicer, rpc, on_the_loop)  # what the generated add_*_to_server registers

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        if variant == "inline":
            registration = ServiceRegistration(service_name, lambda server: add_to_server(servicer, server))
            kmono = KmonoServer(ServerConfig(host=host, port=port, grace_seconds=1.0), [registration])
            await kmono.start()
            await stop.wait()
            await kmono.stop(1.0)
            return
        server = grpc.aio.server()
        add_to_server(servicer, server)
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        server.add_insecure_port(f"{host}:{port}")
        await server.start()
        await checker.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        await stop.wait()
        await server.stop(1.0)

    configure_logging("INFO")
    asyncio.run(serve())


def stop_service(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def print_cpu(
    cpu: dict[str, tuple[float, float | None]],
    args: Any,
    names: tuple[str, str, str, str],
    *,
    label_width: int,
    digits: int,
    work: str,
) -> None:
    """The CPU-per-request table of a gRPC benchmark (`cpu_ms_per_call`'s rows: client ms, server ms or None) and
    what the server spends beyond its own `work`. `names`: the rows (local baseline, local + conversions, the
    gRPC call, Health.Check); `args` carries `cpu_calls` and `cpu_rounds`."""
    local, converted, remote, floor = names
    print(f"  CPU per request ({args.cpu_calls} calls per block, median of {args.cpu_rounds} rounds):")
    print(f"  {'':<{label_width}} {'client ms':>9} {'server ms':>9} {'total ms':>9} {'ratio':>7}")
    base = cpu[local][0]
    for name, (client, server) in cpu.items():
        total = client + (server or 0.0)
        shown = "-" if server is None else f"{server:.{digits}f}"
        print(
            f"  {name:<{label_width}} {client:9.{digits}f} {shown:>9} {total:9.{digits}f} {total / base:7.3f}"
        )
    server = cpu[remote][1]
    if server is not None:
        print(
            f"  server CPU beyond {work}: {server - cpu[converted][0]:.{digits}f} ms (Health.Check alone: "
            f"{cpu[floor][1]:.{digits}f} ms); client CPU of the call: {cpu[remote][0]:.{digits}f} ms"
        )
