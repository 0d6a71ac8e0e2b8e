"""Where a video job's time goes in the service, against the same work done in-process; CreateVideo under a full queue.

    .venv/bin/python benchmarks/video_service.py                        # about half a minute on a 2-core CPU
    .venv/bin/python benchmarks/video_service.py --jobs 60 --steps 8 --threads 2 --previews

What is measured (same tiny MVideo, same job: 9 frames of 32 x 32 with a mask condition, `--steps` steps):

1. per-job overhead. Each round runs, interleaved ABBA (after one warm-up of each), on the same warm engine:
   - in-process: `engine.generate`, then the artifacts the worker makes of its frames (video MP4, mask overlay
     MP4, mask sequence bytes), timed apart;
   - the service over loopback gRPC, the server in this process: CreateVideo -> WatchOperation to done ->
     DownloadArtifact of every artifact.
   The service's own overhead of a round = job wall - in-process engine time - in-process artifact production;
   the goal is <= `--goal-ms` at p50 (the PASS/FAIL line). As a cross-check that the load on the machine moves
   less, the same overhead read off the service's own timeline: job wall - its engine time (less the step
   callbacks, which are the service's) - its encoding time.

   The breakdown is that timeline: the benchmark wraps the operation store's methods, `ArtifactStore.put` and
   the engine (its `generate` and the callbacks the worker passes it) with `time.perf_counter` stamps (the only
   patching it does) and adds the client's own stamps. The unindented rows after "job wall" chain from the
   client's call to the last byte downloaded (they add up to the wall time); each runs from the start of one
   call to the start of the next, because a store call returns only after its subscribers were told (a woken
   watcher may even finish first). Indented rows are parts of the row above; "(sum)"/"(count)" rows add up
   calls anywhere in the job. p50 over rounds, with p10-p90 as the spread: the machine may be loaded, so only
   numbers of the same run compare.

   | row                              | from -> to                                                                |
   |----------------------------------|---------------------------------------------------------------------------|
   | CreateVideo RPC (client)         | client call -> client has the operation (overlaps the chain)              |
   | request -> store.create          | client call -> the servicer stores it (gRPC, validation, job planning)   |
   | store.create -> claimed          | the create (its commit, fsync) -> the worker has claimed the job          |
   | claimed -> engine (setup)        | claim -> engine.generate called ("starting" write, cancel check, ...)     |
   | in-engine (service)              | engine.generate; step callbacks: progress writes and checks inside it     |
   | engine -> store.finish           | encoding (the rest), artifact puts, the "encoding" metadata write         |
   | store.finish -> watcher has done | the finish (its commit, fsync) -> the client's watch stream has done      |
   | done -> downloaded               | every artifact, one DownloadArtifact each                                 |
2. backpressure: `--max-queued` jobs fill the queue behind one blocked job; then `--calls` CreateVideo calls are
   refused with RESOURCE_EXHAUSTED; p50/p99 of their latency (ms), without and with a request_id (the latter
   validates the request first).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch
from kmono.video.v1 import video_pb2

from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.trajectory import Trajectory
from generation.mvideo.engine import GeneratedVideo, load_mvideo_engine
from libs.media import dumps, encode_video, render_overlay, to_proto
from libs.serving.operations import OperationStore
from services.video import convert
from services.video.artifacts import ArtifactStore
from services.video.client import CHANNEL_OPTIONS, LocalServer, VideoClient
from services.video.config import VideoServiceConfig

STORE_CALLS = ("create", "claim_next", "update_progress", "heartbeat", "finish", "get", "is_cancel_requested")
"""OperationStore methods on the timeline (every other one is neither timed nor counted)."""


class BlockedEngine:
    """The warm engine, blocked in its first job until `release` (it fills the queue behind it)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.spec = engine, engine.spec
        self.started = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def generate(self, job, on_step, on_stage=None):
        self.started.set()
        self.release.wait(120)
        return GeneratedVideo(np.zeros((job.num_frames, job.height, job.width, 3), np.uint8), None)


@dataclass(frozen=True)
class Event:
    what: str
    start: float
    end: float
    found: bool = True  # claim_next: whether it returned an operation

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    """perf_counter stamps of wrapped calls, from any thread (list.append is atomic)."""

    events: list[Event] = field(default_factory=list)

    def stamp(self, what: str, start: float, end: float, found: bool = True) -> None:
        self.events.append(Event(what, start, end, found))

    def timed(self, what: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = call(*args, **kwargs)
            self.stamp(what, start, time.perf_counter(), result is not None)
            return result

        return wrapper

    @contextlib.contextmanager
    def patched(self, owner: type, names: tuple[str, ...], prefix: str) -> Iterator[None]:
        originals = {name: getattr(owner, name) for name in names}
        for name, call in originals.items():
            setattr(owner, name, self.timed(f"{prefix}.{name}", call))
        try:
            yield
        finally:
            for name, call in originals.items():
                setattr(owner, name, call)

    def wait_for(self, what: str, after: float, timeout: float = 30.0) -> None:
        """Until a `what` call that started after `after` has returned (its thread may trail the client)."""
        deadline = time.perf_counter() + timeout
        while not any(event.what == what and event.start >= after for event in self.events):
            assert time.perf_counter() < deadline, f"no {what} call returned"
            time.sleep(0.001)

    def starting_between(self, start: float, end: float) -> list[Event]:
        return [event for event in self.events if start <= event.start <= end]


class TimedEngine:
    """The warm engine, its `generate` and the callbacks it calls (progress, checks) on the timeline."""

    def __init__(self, engine: Any, timeline: Timeline) -> None:
        self.engine, self.spec, self.timeline = engine, engine.spec, timeline
        self._generate = timeline.timed("engine.generate", engine.generate)

    def generate(self, job: Any, on_step: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
        callbacks = [self.timeline.timed("engine.callback", call) for call in (on_step, *args)]
        stage = {key: self.timeline.timed("engine.callback", call) for key, call in kwargs.items()}
        return self._generate(job, *callbacks, **stage)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def job_phases(timeline: Timeline, start: float, created: float, done: float, end: float) -> dict[str, float]:
    """Seconds of each phase of the one service job between `start` (client call) and `end` (last download).

    The unindented rows after the first chain from `start` to `end` (they add up to the job's wall time), each
    from the start of one call to the start of the next: a store call returns only after its subscribers
    were told (a woken watcher may even finish first), so its end is no boundary."""
    events = timeline.starting_between(start, end)

    def one(what: str) -> Event:
        matching = [event for event in events if event.what == what and event.found]
        assert len(matching) == 1, f"expected one {what} in the job, found {len(matching)}"
        return matching[0]

    def total(*whats: str, within: tuple[float, float] = (start, end)) -> float:
        return sum(
            event.seconds
            for event in events
            if event.what in whats and within[0] <= event.start and event.end <= within[1]
        )

    create, claim, finish = one("store.create"), one("store.claim_next"), one("store.finish")
    engine = one("engine.generate")
    writes = [event for event in events if event.what == "store.update_progress"]
    window = (engine.end, finish.start)
    puts = total("artifacts.put", within=window)
    store_in_window = total(*(f"store.{name}" for name in STORE_CALLS), within=window)
    return {
        "CreateVideo RPC (client)": created - start,
        "request -> store.create": create.start - start,
        "store.create -> claimed": claim.end - create.start,
        "  store.create": create.seconds,
        "  store.claim_next": claim.seconds,
        "claimed -> engine (setup)": engine.start - claim.end,
        "in-engine (service)": engine.seconds,
        "  step callbacks": total("engine.callback", within=(engine.start, engine.end)),
        "engine -> store.finish": finish.start - engine.end,
        "  encoding (rest)": finish.start - engine.end - puts - store_in_window,
        "  artifact store puts": puts,
        "  metadata writes": total("store.update_progress", within=window),
        "store.finish -> watcher has done": done - finish.start,
        "  store.finish (call)": finish.seconds,
        "done -> downloaded": end - done,
        "metadata writes (sum)": sum(event.seconds for event in writes),
        "metadata writes (count)": float(len(writes)),
        "cancel checks (sum)": total("store.is_cancel_requested"),
        "store.get (count)": float(sum(event.what == "store.get" for event in events)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=30, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--goal-ms", type=float, default=15.0, help="p50 service overhead goal")
    parser.add_argument("--previews", action="store_true", help="also time jobs with the default previews")
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
    job = convert.video_job(request, {"mvideo": engine.spec}, convert.RequestLimits())

    def direct() -> tuple[float, float]:
        """(engine, artifacts) seconds in-process: the frames, then what the worker makes of them."""
        started = time.perf_counter()
        video = engine.generate(job, lambda step, total, preview: None)
        generated = time.perf_counter()
        encode_video(video.frames, job.fps, "mp4")
        encode_video(render_overlay(video.frames, video.masks, labels=False), job.fps, "mp4")
        dumps(video.masks, "pb")
        return generated - started, time.perf_counter() - generated

    timeline = Timeline()
    rounds: list[dict[str, float]] = []
    preview_times: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        timeline.patched(OperationStore, STORE_CALLS, "store"),
        timeline.patched(ArtifactStore, ("put",), "artifacts"),
    ):
        config = VideoServiceConfig(data_dir=Path(tmp), tiny_engine=True, torch_threads=args.threads)
        timed_engine = TimedEngine(engine, timeline)
        with LocalServer(config, load_engines=lambda: {"mvideo": timed_engine}) as local:
            with grpc.insecure_channel(local.address, options=CHANNEL_OPTIONS) as channel:
                client = VideoClient(channel)

                def service(request: video_pb2.CreateVideoRequest = request) -> dict[str, float]:
                    start = time.perf_counter()
                    name = client.create(request).name
                    created = time.perf_counter()
                    op = client.wait(name)
                    done = time.perf_counter()
                    response = video_pb2.CreateVideoResponse()
                    op.response.Unpack(response)
                    for artifact in response.artifacts:
                        client.download(artifact.name)
                    end = time.perf_counter()
                    timeline.wait_for("store.finish", after=start)
                    phases = job_phases(timeline, start, created, done, end)
                    phases["job wall"] = end - start
                    return phases

                direct(), service()  # warm-up
                if args.previews:
                    service(with_previews)
                for i in range(args.jobs):
                    if i % 2:  # ABBA: neither side always runs first
                        phases = service()
                        engine_s, artifacts_s = direct()
                    else:
                        engine_s, artifacts_s = direct()
                        phases = service()
                    phases["in-process engine"] = engine_s
                    phases["in-process artifacts"] = artifacts_s
                    phases["  service - in-process engine"] = phases["in-engine (service)"] - engine_s
                    phases["service overhead"] = phases["job wall"] - engine_s - artifacts_s
                    phases["own time (timeline)"] = (
                        phases["job wall"]
                        - (phases["in-engine (service)"] - phases["  step callbacks"])
                        - phases["  encoding (rest)"]
                    )
                    rounds.append(phases)
                    if args.previews:
                        preview_times.append(service(with_previews)["job wall"])

    def p50(key: str) -> float:
        return percentile([r[key] for r in rounds], 50)

    print(f"tiny MVideo, {args.steps} steps, 9x32x32 with masks, {args.jobs} interleaved rounds, one process")
    print(f"{'phase':28s} {'p50 ms':>8s}   {'p10 - p90 ms':>15s}")
    order = ["in-process engine", "in-process artifacts", "job wall"]
    for key in rounds[0]:
        if key not in order and key not in ("service overhead", "own time (timeline)"):
            order.append(key)
        if key == "  step callbacks":
            order.append("  service - in-process engine")
    for key in order:
        values = [r[key] for r in rounds]
        if key.endswith("(count)"):
            print(f"{key:28s} {percentile(values, 50):8.0f}")
            continue
        low, high = percentile(values, 10) * 1000, percentile(values, 90) * 1000
        print(f"{key:28s} {percentile(values, 50) * 1000:8.2f}   {low:6.2f} - {high:6.2f}")
    overhead = [r["service overhead"] * 1000 for r in rounds]
    own = [r["own time (timeline)"] * 1000 for r in rounds]
    base = p50("in-process engine") + p50("in-process artifacts")
    print(
        f"service overhead (job wall - in-process engine - in-process artifacts, per round): "
        f"p50 {percentile(overhead, 50):.2f} ms  (p10 {percentile(overhead, 10):.2f}, p90 {percentile(overhead, 90):.2f})"
    )
    print(
        f"cross-check, the service's own time on the timeline (job wall - engine without the step callbacks - "
        f"encoding): p50 {percentile(own, 50):.2f} ms  (p10 {percentile(own, 10):.2f}, p90 {percentile(own, 90):.2f})"
    )
    print(
        f"ratio job wall / in-process engine: {p50('job wall') / p50('in-process engine'):.2f}x; "
        f"/ in-process engine + artifacts: {p50('job wall') / base:.2f}x"
    )
    verdict = "PASS" if percentile(overhead, 50) <= args.goal_ms else "FAIL"
    engine_times = [r["in-process engine"] * 1000 for r in rounds]
    spread = percentile(engine_times, 90) - percentile(engine_times, 10)
    noisy = ""
    if spread > 0.3 * percentile(engine_times, 50):
        noisy = f" (noisy: the in-process engine's p10-p90 spread is {spread:.0f} ms, the machine is loaded; rerun)"
    print(
        f"{verdict}: service overhead p50 {percentile(overhead, 50):.2f} ms vs goal <= {args.goal_ms:g} ms{noisy}"
    )
    if preview_times:
        p = percentile(preview_times, 50)
        print(
            f"with default previews: p50 {p * 1000:.1f} ms/job ({p / p50('in-process engine'):.2f}x the engine; "
            "a low-res VAE decode every steps//4 steps)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        blocked = BlockedEngine(engine)
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
