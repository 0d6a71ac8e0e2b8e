"""Overhead of the video service against calling the pipeline in-process, and CreateVideo latency under a full queue.

    .venv/bin/python benchmarks/video_service.py                        # about half a minute on a 2-core CPU
    .venv/bin/python benchmarks/video_service.py --jobs 10 --steps 8 --threads 2

What is measured (same tiny MVideo, same job: 9 frames of 32 x 32 with a mask condition, `--steps` steps):

1. service overhead: mean wall time of one job end to end over loopback gRPC (CreateVideo -> WatchOperation to
   done -> DownloadArtifact of every artifact: video MP4, overlay MP4, mask sequence), the server in this
   process, against the warm pipeline called directly (`PipelineEngine.generate`, frames only). The ratio
   includes what the service adds: the SQLite operation store, progress/preview writes, MP4 encoding of the video
   and the overlay, the artifact store, gRPC streaming. Interleaved runs, after one warm-up of each.
2. backpressure: `--max-queued` jobs fill the queue behind one blocked job; then `--calls` CreateVideo calls are
   refused with RESOURCE_EXHAUSTED; p50/p99 of their latency (ms), without and with a request_id (the latter
   validates, creates and rolls back).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from kmono.video.v1 import video_pb2

from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.trajectory import Trajectory
from libs.media import to_proto
from services.video import convert
from services.video.client import CHANNEL_OPTIONS, LocalServer, VideoClient
from services.video.config import VideoServiceConfig
from services.video.engine import TINY_SPEC, load_mvideo_engine


class BlockedEngine:
    spec = TINY_SPEC

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def generate(self, job, on_step):
        self.started.set()
        self.release.wait(120)
        return np.zeros((job.num_frames, job.height, job.width, 3), np.uint8)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-queued", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    masks = synthesize(
        [SyntheticObject("circle", Trajectory([(0, (8, 8)), (8, (24, 20))]), width=10, height=10, label="ball")],
        width=32, height=32, num_frames=9, fps=8,
    )  # fmt: skip
    request = video_pb2.CreateVideoRequest(
        prompt="a red circle moves right",
        mask_sequence=to_proto(masks),
        num_inference_steps=args.steps,
        seed=0,
        preview_options=video_pb2.PreviewOptions(interval_steps=0),  # the direct call makes none either
    )
    with_previews = video_pb2.CreateVideoRequest()
    with_previews.CopyFrom(request)
    with_previews.ClearField("preview_options")  # server default: a preview every steps // 4 steps
    engine = load_mvideo_engine(path=None, tiny=True, torch_threads=args.threads)
    plan = convert.resolve(request, {"mvideo": engine.spec}, convert.RequestLimits())
    job = plan.job(request.prompt, "", 0, plan.masks)

    def direct() -> float:
        started = time.perf_counter()
        engine.generate(job, lambda step, total, preview: None)
        return time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        config = VideoServiceConfig(data_dir=Path(tmp), tiny_engine=True, torch_threads=args.threads)
        with LocalServer(config, load_engines=lambda: {"mvideo": engine}) as local:
            with grpc.insecure_channel(local.address, options=CHANNEL_OPTIONS) as channel:
                client = VideoClient(channel)

                def service(request: video_pb2.CreateVideoRequest = request) -> float:
                    started = time.perf_counter()
                    op = client.wait(client.create(request).name)
                    response = video_pb2.CreateVideoResponse()
                    op.response.Unpack(response)
                    for artifact in response.artifacts:
                        client.download(artifact.name)
                    return time.perf_counter() - started

                direct(), service(), service(with_previews)  # warm-up
                direct_times, service_times, preview_times = [], [], []
                for _ in range(args.jobs):
                    direct_times.append(direct())
                    service_times.append(service())
                    preview_times.append(service(with_previews))
        d, s = statistics.mean(direct_times), statistics.mean(service_times)
        p = statistics.mean(preview_times)
        print(
            f"pipeline in-process : {d * 1000:8.1f} ms/job  (tiny MVideo, {args.steps} steps, 9x32x32, n={args.jobs})"
        )
        print(f"service over gRPC   : {s * 1000:8.1f} ms/job  (create -> watch -> download 3 artifacts)")
        print(f"overhead ratio      : {s / d:8.2f}x  (+{(s - d) * 1000:.1f} ms/job)")
        print(
            f"with default previews: {p * 1000:7.1f} ms/job  ({p / d:.2f}x; a low-res VAE decode every steps//4 steps)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        blocked = BlockedEngine()
        config = VideoServiceConfig(data_dir=Path(tmp), tiny_engine=True, max_queued_jobs=args.max_queued)
        with LocalServer(config, load_engines=lambda: {"mvideo": blocked}) as local:
            with grpc.insecure_channel(local.address, options=CHANNEL_OPTIONS) as channel:
                client = VideoClient(channel)
                client.create(request)
                blocked.started.wait(30)  # claimed by the worker: no longer queued
                for _ in range(args.max_queued):
                    client.create(request)
                for label, request_id in (("no request_id", False), ("with request_id", True)):
                    latencies = []
                    for i in range(args.calls):
                        refused = video_pb2.CreateVideoRequest()
                        refused.CopyFrom(request)
                        if request_id:
                            refused.request_id = f"bench-{i}"
                        started = time.perf_counter()
                        try:
                            client.create(refused)
                            raise SystemExit("the queue was not full")
                        except grpc.RpcError as exc:
                            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                        latencies.append((time.perf_counter() - started) * 1000)
                    print(
                        f"CreateVideo, queue full ({label:15s}): p50 {percentile(latencies, 50):6.2f} ms  "
                        f"p99 {percentile(latencies, 99):6.2f} ms  (n={args.calls}, RESOURCE_EXHAUSTED)"
                    )
            blocked.release.set()


if __name__ == "__main__":
    main()
