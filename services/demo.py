"""`make demo`: start every service as its own process, check each one over gRPC, shut them down cleanly.

Each service runs exactly as an operator would run it (`python -m services.<name>`) on a free loopback port
(masks with its tiny random extractor models, `--tiny-models`: nothing is downloaded). The check asks
grpc.health.v1 for the service's own name, lists services through reflection, and calls one RPC: OK for a
service whose engine is built (masks draws a small procedural mask sequence), else the error a client gets
while the engine is not built (UNIMPLEMENTED, naming the engine). Then SIGTERM: every process must turn
NOT_SERVING, drain and exit 0 within its grace period.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.rank.v1 import rank_pb2, rank_pb2_grpc
from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from services import SERVICE_NAMES

SERVICE_FULL_NAMES = {
    "video": "kmono.video.v1.VideoGenerationService",
    "masks": "kmono.masks.v1.MaskService",
    "rank": "kmono.rank.v1.RankingService",
    "rerank": "kmono.rerank.v1.RerankService",
    "dialogue": "kmono.dialogue.v1.DialogueService",
}

# One representative call per service: (stub class, method, request).
PROBE_CALLS = {
    "video": (
        video_pb2_grpc.VideoGenerationServiceStub,
        "CreateVideo",
        video_pb2.CreateVideoRequest(prompt="hi"),
    ),
    "masks": (
        masks_pb2_grpc.MaskServiceStub,
        "SynthesizeMasks",
        masks_pb2.SynthesizeMasksRequest(
            width=64,
            height=48,
            num_frames=8,
            fps=8,
            objects=[
                masks_pb2.SyntheticObject(
                    shape=masks_pb2.SHAPE_CIRCLE,
                    label="ball",
                    width=10,
                    center_trajectory=masks_pb2.PointTrajectory(
                        keyframes=[
                            masks_pb2.PointKeyframe(frame_index=0, x=8, y=8),
                            masks_pb2.PointKeyframe(frame_index=7, x=56, y=40),
                        ]
                    ),
                )
            ],
        ),
    ),
    "rank": (rank_pb2_grpc.RankingServiceStub, "RankCandidates", rank_pb2.RankCandidatesRequest()),
    "rerank": (rerank_pb2_grpc.RerankServiceStub, "RerankList", rerank_pb2.RerankListRequest()),
    "dialogue": (dialogue_pb2_grpc.DialogueServiceStub, "CreateSession", dialogue_pb2.CreateSessionRequest()),
}


# Flags a service needs beyond the common ones to start on a machine without model weights.
EXTRA_ARGS = {"masks": ["--tiny-models", "--torch-threads", "1"]}


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, data_dir: Path, log_dir: Path) -> Running:
    port = free_port()
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", "--host", "127.0.0.1", "--port", str(port), "--grace-seconds", "5",
         *EXTRA_ARGS.get(name, [])],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "KMONO_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    return Running(name, port, process)


def wait_serving(running: Running, timeout: float) -> str:
    """Poll the health service until the service answers SERVING; returns the status name."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if running.process.poll() is not None:
                raise RuntimeError(
                    f"{running.name} exited with code {running.process.returncode} while starting"
                )
            try:
                reply = health.Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_FULL_NAMES[running.name]), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return "SERVING"
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{running.name} not SERVING after {timeout:.0f}s")
            time.sleep(0.2)


def reflected_services(port: int) -> list[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        return sorted(service.name for service in reply.list_services_response.service)


def probe(name: str, port: int) -> str:
    """Call the service's representative RPC; returns 'CODE: message'."""
    stub_type, method, request = PROBE_CALLS[name]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            getattr(stub_type(channel), method)(request, timeout=5)
            return "OK"
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"


def stop(running: Running, timeout: float) -> int:
    running.process.send_signal(signal.SIGTERM)
    try:
        return running.process.wait(timeout)
    except subprocess.TimeoutExpired:
        running.process.kill()
        return -9


@contextlib.contextmanager
def all_services(names: list[str], data_dir: Path, log_dir: Path) -> Iterator[list[Running]]:
    started = [start(name, data_dir, log_dir) for name in names]
    try:
        yield started
    finally:
        for running in started:
            if running.process.poll() is None:
                running.process.kill()


def run_demo(names: list[str], work_dir: Path, start_timeout: float = 60.0) -> bool:
    """Start, check and stop `names`; prints one report line per service; returns True when all passed."""
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ok = True
    with all_services(names, work_dir / "data", log_dir) as started:
        for running in started:
            health = wait_serving(running, start_timeout)
            listed = reflected_services(running.port)
            answer = probe(running.name, running.port)
            print(f"{running.name:9s} :{running.port}  health={health}  reflection={','.join(listed)}")
            print(f"{'':9s} probe {PROBE_CALLS[running.name][1]} -> {answer}")
            ok &= SERVICE_FULL_NAMES[running.name] in listed
        for running in started:
            code = stop(running, timeout=15)
            print(f"{running.name:9s} SIGTERM -> exit code {code}")
            ok &= code == 0
    print(f"logs: {log_dir}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--services", nargs="+", default=list(SERVICE_NAMES), choices=SERVICE_NAMES)
    parser.add_argument(
        "--work-dir", type=Path, default=Path("out/demo"), help="logs and data (default: out/demo)"
    )
    args = parser.parse_args(argv)
    try:
        ok = run_demo(args.services, args.work_dir)
    except (RuntimeError, TimeoutError, grpc.RpcError) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    print("demo: all services healthy and stopped cleanly" if ok else "demo: FAILED (see logs above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
