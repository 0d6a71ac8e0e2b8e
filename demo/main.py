"""`make demo`, the main job: generate mask-conditioned videos with the video service over gRPC, end to end.

1. Start every service as its own process, exactly as an operator would (`python -m services.<name>` on a free
   loopback port): video with the shapes-world embedded default (`generation/mvideo/shapes/default`; when it is
   not there, or with `--tiny-engine`, a tiny random MVideo, which runs every path but draws noise), masks with
   its tiny extractor. Each must answer grpc.health.v1 SERVING and list itself through reflection; the other
   services answer one probe call (OK, or UNIMPLEMENTED naming the engine they wait for).
   The RankingService (the embedded MMBee model) ranks 50 live candidates for a frequent gifter and for a viewer
   it has never seen, and prints each top 5 with its gift-through-rate (demo/rank.py).
   The RerankService (the embedded Dual-Rerank model) orders a page of
   the grid feed from 8 candidates with a per-author cap, and prints the page before and after (demo/rerank.py).
   The DialogueService (the embedded default) answers a customer's two questions over a phone's product details
   (one cited, one it cannot answer) and proposes ranked quick comments for a live slice (demo/dialogue.py).
2. Draw a motion (a procedural mask sequence, sized to what the video engine generates), edit it (move one
   object and speed it up, there and back), compose it with a second object, and loop it over three clips (a
   long video, made clip by clip); generate a video for each over
   gRPC (CreateVideo -> WatchOperation -> DownloadArtifact), write the videos, mask overlays and side-by-side
   GIFs into --out, and print the mask IoU of each: the generated objects segmented colour-agnostically
   (pixels far from a fitted background, the shapes evaluator's `foreground`) against the condition masks.
3. SIGTERM every process: each must turn NOT_SERVING, drain and exit 0.
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

from demo.dialogue import run_dialogue_calls
from demo.rank import run_rank_calls
from demo.rerank import model_args as rerank_model_args
from demo.rerank import run_rerank_calls
from services import SERVICE_FULL_NAMES, SERVICE_NAMES

# One representative call per service: (stub class, method, request).
PROBE_CALLS = {
    "video": (
        video_pb2_grpc.VideoGenerationServiceStub,
        "CreateVideo",
        video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=1, seed=0),
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
    "rank": (
        rank_pb2_grpc.RankingServiceStub,
        "RankCandidates",
        rank_pb2.RankCandidatesRequest(
            user_id="u1", candidates=[rank_pb2.Candidate(stream_id="s1", author_id="a1")]
        ),
    ),
    "rerank": (
        rerank_pb2_grpc.RerankServiceStub,
        "RerankList",
        rerank_pb2.RerankListRequest(
            user_id="u1", items=[rerank_pb2.RerankItem(item_id="v1"), rerank_pb2.RerankItem(item_id="v2")]
        ),
    ),
    "dialogue": (
        dialogue_pb2_grpc.DialogueServiceStub,
        "CreateSession",
        dialogue_pb2.CreateSessionRequest(user_id="demo-probe"),
    ),
}


# Flags a service needs beyond the common ones to start on a machine without model weights.
EXTRA_ARGS = {
    "masks": ["--tiny-models", "--torch-threads", "1"],
    "video": ["--tiny-engine", "--torch-threads", "1"],
}


@dataclass
class Running:
    name: str
    port: int
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, data_dir: Path, log_dir: Path, extra: dict[str, list[str]] | None = None) -> Running:
    port = free_port()
    args = (extra or EXTRA_ARGS).get(name, [])
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", "--host", "127.0.0.1", "--port", str(port), "--grace-seconds", "5",
         *args],
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
def all_services(
    names: list[str], data_dir: Path, log_dir: Path, extra: dict[str, list[str]] | None = None
) -> Iterator[list[Running]]:
    started = [start(name, data_dir, log_dir, extra) for name in names]
    try:
        yield started
    finally:
        for running in started:
            if running.process.poll() is None:
                running.process.kill()


def video_engine_args(tiny: bool, engine_path: str) -> tuple[list[str], str]:
    """Flags of the video service and a description: the pipeline at `engine_path` when it is there, else tiny."""
    if not tiny and (Path(engine_path) / "model_index.json").is_file():
        return ["--engine-path", engine_path, "--torch-threads", "1"], f"MVideo pipeline {engine_path}"
    why = "--tiny-engine" if tiny else f"no pipeline at {engine_path} yet"
    return ["--tiny-engine", "--torch-threads", "1"], f"tiny random MVideo ({why}; the videos are noise)"


def draw_motions(spec) -> list[tuple[str, str, object]]:
    """(name, prompt, MaskSequence): a drawn motion, its edit (moved, sped up there and back), a composition (and
    the same with the prompt's phrases swapped: the labels keep the circle red), the drawn motion there and
    back over three clips (a long video), and a prompt alone (masks None)."""
    from generation.masks import edit
    from generation.masks.compose import compose
    from generation.masks.synth import SyntheticObject, synthesize
    from generation.masks.trajectory import Trajectory

    w, h, n = spec.width, spec.height, spec.num_frames
    r = max(3.0, 0.15 * min(w, h))
    ball = SyntheticObject(
        "circle", Trajectory([(0, (r + 1, h / 2)), (n - 1, (w - r - 1, h / 2))]), width=2 * r, height=2 * r,
        label="red circle",
    )  # fmt: skip
    drawn = synthesize([ball], width=w, height=h, num_frames=n, fps=spec.fps)
    fast = edit.retime(drawn, speed=2.0)  # twice as fast: half the frames ...
    fast = edit.loop(
        fast, target_num_frames=n, ping_pong=True
    )  # ... then back again: there and back in n frames
    moved = edit.translate(fast, offset=(0.0, -h / 4))  # one quarter of the frame higher
    box = SyntheticObject(
        "square", Trajectory([(0, (w / 2, h - r - 1)), (n - 1, (w / 2, r + 1))]), width=2 * r, height=2 * r,
        label="blue square",
    )  # fmt: skip
    second = synthesize([box], width=w, height=h, num_frames=n, fps=spec.fps)
    composed = compose([moved, second]).sequence
    # three clips long, there and back: the service makes it clip by clip, each clip continuing the last
    long = edit.loop(drawn, target_num_frames=1 + 3 * (n - 1), ping_pong=True)
    return [
        ("drawn", "a red circle", drawn),
        ("edited", "a red circle", moved),
        ("composed", "a red circle and a blue square", composed),
        # the same masks, the phrases in the other order: each object keeps its own words (by its label)
        ("bound", "a blue square and a red circle", composed),
        ("long", "a red circle", long),
        # no masks at all: the engine plans the motion from the words and returns it (the shapes default does)
        ("text", "a green triangle and a yellow diamond", None),
    ]


def mask_iou(video_path: Path, masks) -> float:
    """IoU of the colour-agnostic foreground of a generated video with the union of its condition masks (the
    shapes-world evaluation's `miou_masked` for one video; numpy only)."""
    import numpy as np

    from generation.mvideo.shapes.segment import video_mask_iou
    from libs.media import read_video

    frames, _ = read_video(video_path)
    return video_mask_iou(frames, np.stack(list(masks.iter_id_maps())))


def run_video_jobs(port: int, spec, out_dir: Path) -> bool:
    """Generate one video per motion over gRPC; write outputs into `out_dir`; print paths and mask IoU."""
    from libs.media import loads, to_proto
    from services.video.client import CHANNEL_OPTIONS, VideoClient, metadata_of, response_of

    ok = True
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        client = VideoClient(channel)
        for name, prompt, masks in draw_motions(spec):
            started = time.monotonic()
            request = video_pb2.CreateVideoRequest(prompt=prompt, seed=0)
            if masks is not None:
                request.mask_sequence.CopyFrom(to_proto(masks))
            op = client.create(request)
            updates = list(
                client.video.WatchOperation(video_pb2.WatchOperationRequest(name=op.name), timeout=300)
            )
            op = updates[-1]
            steps = [metadata_of(o).progress.step for o in updates]
            if op.HasField("error"):
                print(f"video     {name:9s} FAILED: {op.error.message}")
                ok = False
                continue
            paths = client.save_outputs(op, out_dir, name)
            response = response_of(op)
            planned = masks is None
            if planned:  # text only: the masks are the layout the engine planned from the prompt
                if "mask_sequence" not in paths:
                    print(
                        f"video     {name:9s} '{prompt}': this engine returns no planned layout ({paths['video']})"
                    )
                    continue
                masks = loads(paths["mask_sequence"].read_bytes(), "pb")
            score = mask_iou(paths["video"], masks)
            progress = metadata_of(op).progress
            print(
                f"video     {name:9s} {response.num_frames} frames {response.width}x{response.height} "
                f"'{prompt}' in {time.monotonic() - started:.1f}s (progress {progress.step}/{progress.total_steps} "
                f"steps, monotonic={steps == sorted(steps)})  mask IoU {score:.2f}"
                + (" (against the layout it planned)" if planned else "")
            )
            for kind in ("video", "mask_overlay", "side_by_side"):
                print(f"{'':10s}{kind:13s} {paths[kind]}")
    return ok


def run_demo(
    names: list[str],
    work_dir: Path,
    out_dir: Path,
    *,
    tiny: bool = False,
    engine_path: str | None = None,
    start_timeout: float = 120.0,
) -> bool:
    """Start all services, check them, run the video jobs, stop everything; True when all passed."""
    from generation.mvideo.defaults import SHAPES_DEFAULT_PATH
    from generation.mvideo.engine import TINY_SPEC
    from generation.mvideo.jobs import spec_from_dir
    from recsys.mmbee.defaults import DEFAULT_MODEL_PATH

    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    engine_path = engine_path or str(SHAPES_DEFAULT_PATH)
    video_args, engine_text = video_engine_args(tiny, engine_path)
    spec = TINY_SPEC if "--tiny-engine" in video_args else spec_from_dir(engine_path)
    rerank_args, rerank_text = rerank_model_args(work_dir) if "rerank" in names else ([], "")
    extra = {**EXTRA_ARGS, "video": video_args, "rerank": rerank_args}
    ok = True
    with all_services(names, work_dir / "data", log_dir, extra) as started:
        for running in started:
            health = wait_serving(running, start_timeout)
            listed = reflected_services(running.port)
            answer = probe(running.name, running.port) if running.name != "video" else "(below)"
            print(
                f"{running.name:9s} :{running.port}  health={health}  probe {PROBE_CALLS[running.name][1]} -> {answer}"
            )
            ok &= SERVICE_FULL_NAMES[running.name] in listed
        rank = next((r for r in started if r.name == "rank"), None)
        if rank is not None:
            ok &= run_rank_calls(rank.port, DEFAULT_MODEL_PATH)
        rerank = next((r for r in started if r.name == "rerank"), None)
        if rerank is not None:
            ok &= run_rerank_calls(rerank.port, rerank_text)
        dialogue = next((r for r in started if r.name == "dialogue"), None)
        if dialogue is not None:
            ok &= run_dialogue_calls(dialogue.port)
        video = next((r for r in started if r.name == "video"), None)
        if video is not None:
            print(f"video engine: {engine_text}: {spec.num_frames} frames of {spec.width}x{spec.height}")
            ok &= run_video_jobs(video.port, spec, out_dir)
        for running in started:
            code = stop(running, timeout=30)
            print(f"{running.name:9s} SIGTERM -> exit code {code}")
            ok &= code == 0
    print(f"outputs: {out_dir}  logs: {log_dir}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--services", nargs="+", default=list(SERVICE_NAMES), choices=SERVICE_NAMES)
    parser.add_argument(
        "--work-dir", type=Path, default=Path("out/demo"), help="logs and data (default: out/demo)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="videos, overlays, GIFs (default: ./out)"
    )
    parser.add_argument("--tiny-engine", action="store_true", help="tiny random video engine (a fast check)")
    parser.add_argument(
        "--engine-path",
        default=None,
        help="MVideo pipeline folder (default: the shapes-world embedded default)",
    )
    args = parser.parse_args(argv)
    try:
        ok = run_demo(
            args.services, args.work_dir, args.out, tiny=args.tiny_engine, engine_path=args.engine_path
        )
    except (RuntimeError, TimeoutError, grpc.RpcError) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        "demo: videos generated, all services healthy and stopped cleanly"
        if ok
        else "demo: FAILED (see above)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
