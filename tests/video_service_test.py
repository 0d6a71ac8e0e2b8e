"""VideoGenerationService over loopback gRPC with the tiny MVideo: create -> watch -> download, request_id
idempotency, cancellation within a step, queue full -> RESOURCE_EXHAUSTED, deadlines, kill -9 of a server
process mid-job and recovery, mask URIs (file, artifact, fsspec) and INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import torch
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import error_details_pb2
from kmono.common.v1 import media_pb2, operation_pb2
from kmono.video.v1 import video_pb2, video_pb2_grpc

from generation.masks.engine import load_mask_engine
from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.trajectory import Trajectory
from generation.mvideo.engine import TINY_SPEC, GeneratedVideo, load_mvideo_engine
from generation.mvideo.jobs import VideoJob
from libs.media import MaskSequence, dumps, encode_video, loads, read_video, save, to_proto
from libs.serving import find_detail
from libs.serving.operations import OperationStore, State
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from services.video import server
from services.video.artifacts import ArtifactStore
from services.video.client import metadata_of, response_of
from services.video.worker import KIND, seed_of
from tests.fakes import service_config

torch.set_num_threads(1)
SLOW = 120.0


def make_config(tmp_path, *extra: str):
    return service_config(server, tmp_path, "--tiny-engine", *extra)


@functools.cache
def tiny_engine():
    masks = functools.partial(load_mask_engine, tiny=True, torch_threads=1)
    return load_mvideo_engine(path=None, tiny=True, torch_threads=1, load_mask_engine=masks)


class SlowEngine:
    """The warm tiny engine, `delay` seconds slower per step (shared: loaded once per test session)."""

    def __init__(self, delay: float) -> None:
        self.inner = tiny_engine()
        self.spec, self.attention = self.inner.spec, self.inner.attention
        self.delay = delay

    def generate(self, job, on_step, on_stage=lambda stage: None):
        def slowed(step, total, preview):
            time.sleep(self.delay)
            on_step(step, total, preview)

        return self.inner.generate(job, slowed, on_stage)


class GatedEngine:
    """Stands in for the pipeline where a test must control timing: one step per `release()`."""

    spec = TINY_SPEC
    attention = "sdpa"

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.started = threading.Event()
        self.calls = 0
        self.seeds = []

    def generate(self, job: VideoJob, on_step, on_stage=lambda stage: None):
        self.calls += 1
        self.seeds.append(job.seed)
        self.started.set()
        for step in range(job.num_inference_steps):
            if not self.gate.acquire(timeout=30):
                raise TimeoutError("the test never released the step")
            on_step(step + 1, job.num_inference_steps, None)
        return GeneratedVideo(np.zeros((job.num_frames, job.height, job.width, 3), np.uint8), job.masks)


def serve(config, engine=None, **kwargs):
    engine = engine or tiny_engine()
    registrations, on_startup, on_shutdown = server.build(
        config, load_engines=lambda: {"mvideo": engine}, **kwargs
    )
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


def ball(num_frames: int = 9, size: int = 32, objects: int = 1) -> MaskSequence:
    shapes = [
        SyntheticObject(
            "circle", Trajectory([(0, (8, 8)), (num_frames - 1, (24, 20))]), width=10, height=10, label="ball"
        ),
        SyntheticObject(
            "square", Trajectory([(0, (24, 8)), (num_frames - 1, (8, 24))]), width=8, height=8, label="box"
        ),
        SyntheticObject("ellipse", (16, 16), width=6, height=4, label="egg"),
    ][:objects]
    return synthesize(shapes, width=size, height=size, num_frames=num_frames, fps=8)


def noise_masks() -> MaskSequence:
    """9 frames of 32 x 32 salt-and-pepper masks: RLE cannot compress them (several KiB)."""
    id_maps = np.random.default_rng(0).integers(0, 2, size=(9, 32, 32)).astype(np.int32)
    return MaskSequence.from_id_maps(id_maps, None, 8)


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = status_of(error)
    assert status is not None
    detail = find_detail(status, error_details_pb2.BadRequest)
    assert detail is not None, status
    return [violation.field for violation in detail.field_violations]


async def watch(stub, name: str) -> list[operations_pb2.Operation]:
    """Every update WatchOperation streams for the operation, to its end."""
    return [o async for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=name))]


async def download(stub, name: str, **kwargs) -> bytes:
    chunks = [
        c
        async for c in stub.DownloadArtifact(video_pb2.DownloadArtifactRequest(artifact_name=name, **kwargs))
    ]
    return b"".join(c.chunk for c in chunks)


# -- the happy path ----------------------------------------------------------------------------------------------


def test_create_watch_download_with_progress_previews_and_artifacts(tmp_path):
    config = make_config(tmp_path)
    masks = ball()

    async def scenario():
        async with serve(config) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            request = video_pb2.CreateVideoRequest(
                prompt="a red circle moves right",
                mask_sequence=to_proto(masks),
                num_inference_steps=4,
                seed=7,
                preview_options=video_pb2.PreviewOptions(interval_steps=2, num_frames=2, max_edge_pixels=8),
            )
            op = await stub.CreateVideo(request)
            assert not op.done
            assert op.name.startswith("operations/video-")
            stream = await watch(stub, op.name)
            final = stream[-1]
            assert final.done and final.HasField("response"), final.error
            steps = [metadata_of(o).progress.step for o in stream]
            assert steps == sorted(steps) and steps[-1] == 4
            assert metadata_of(final).state == operation_pb2.OPERATION_STATE_SUCCEEDED
            assert metadata_of(final).progress.total_steps == 4 and metadata_of(final).HasField("end_time")
            previews = [p for o in stream for p in metadata_of(o).preview_frames]
            assert previews and all(
                p.mime_type == "image/png" and max(p.width, p.height) <= 8 for p in previews
            )
            assert {p.step for p in previews} <= {2, 4}
            response = response_of(final)
            assert (response.seed, response.width, response.height, response.num_frames) == (7, 32, 32, 9)
            assert response.engine == video_pb2.ENGINE_MVIDEO and response.model_version
            assert response.attention_backend == "sdpa"  # auto on a CPU
            kinds = {a.artifact_id: a for a in response.artifacts}
            assert set(kinds) == {"video", "mask_overlay", "mask_sequence"}
            for artifact in response.artifacts:
                data = await download(stub, artifact.name, chunk_size=1000)
                assert (
                    len(data) == artifact.size_bytes and hashlib.sha256(data).hexdigest() == artifact.sha256
                )
            # by operation name: the video; resumed from an offset
            whole = b"".join(
                [
                    c.chunk
                    async for c in stub.DownloadArtifact(
                        video_pb2.DownloadArtifactRequest(operation_name=op.name)
                    )
                ]
            )
            tail = await download(stub, kinds["video"].name, read_offset=100)
            assert whole[100:] == tail
            (tmp_path / "v.mp4").write_bytes(whole)
            frames, fps = read_video(tmp_path / "v.mp4")
            assert frames.shape == (9, 32, 32, 3) and fps == 8
            assert loads(await download(stub, kinds["mask_sequence"].name), "pb") == masks
            # polling through google.longrunning.Operations agrees
            operations = operations_pb2_grpc.OperationsStub(channel)
            got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
            assert got.done and got.response == final.response
            listed = await operations.ListOperations(operations_pb2.ListOperationsRequest(name="operations"))
            assert [o.name for o in listed.operations] == [op.name]
            # deleting the operation deletes its artifacts too
            stored = [p for p in (tmp_path / "video" / "artifacts").rglob("*") if p.is_file()]
            assert len(stored) == 3
            await operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=op.name))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await download(stub, kinds["video"].name)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            assert not any(p.exists() for p in stored)

    run_async(scenario(), timeout=SLOW)


def test_a_video_longer_than_one_clip_is_made_clip_by_clip(tmp_path):
    from generation.mvideo.engine import LONG_VIDEO_MOTION_STRENGTH
    from generation.mvideo.longvideo import long_video_steps

    config = make_config(tmp_path)
    masks = ball(num_frames=17)  # two clips of the tiny engine's 9 frames, sharing frame 8
    total = long_video_steps(17, TINY_SPEC.num_frames, 3, LONG_VIDEO_MOTION_STRENGTH, TINY_SPEC.frame_step)
    assert total > 3

    async def scenario():
        async with serve(config) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            request = video_pb2.CreateVideoRequest(
                prompt="a red circle moves right",
                mask_sequence=to_proto(masks),
                num_inference_steps=3,
                seed=1,
            )
            op = await stub.CreateVideo(request)
            stream = await watch(stub, op.name)
            final = stream[-1]
            assert final.HasField("response"), final.error
            steps = [metadata_of(o).progress.step for o in stream]
            assert steps == sorted(steps) and steps[-1] == total == metadata_of(final).progress.total_steps
            response = response_of(final)
            assert response.num_frames == 17
            (tmp_path / "long.mp4").write_bytes(await download(stub, f"{op.name}/artifacts/video"))
            frames, _ = read_video(tmp_path / "long.mp4")
            assert frames.shape == (17, 32, 32, 3)
            overlay = await download(stub, f"{op.name}/artifacts/mask_overlay")
            (tmp_path / "overlay.mp4").write_bytes(overlay)
            assert read_video(tmp_path / "overlay.mp4")[0].shape[0] == 17

    run_async(scenario(), timeout=SLOW)


def test_identical_request_id_returns_the_same_operation_and_another_request_conflicts(tmp_path):
    config = make_config(tmp_path)
    engine = GatedEngine()

    async def scenario():
        async with serve(config, engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            request = video_pb2.CreateVideoRequest(
                prompt="a red circle", request_id="3f1c-retry", num_inference_steps=2
            )
            first = await stub.CreateVideo(request)
            again = await stub.CreateVideo(request)
            assert again.name == first.name
            other = video_pb2.CreateVideoRequest(prompt="a blue square", request_id="3f1c-retry")
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CreateVideo(other)
            assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
            engine.gate.release(2)
            final = (await watch(stub, first.name))[-1]
            assert final.done and final.HasField("response")
            # a retry after it finished still returns it (done), without running it again
            assert (await stub.CreateVideo(request)).done
            assert engine.calls == 1
            # no seed asked: the one used is reported, derived from the operation (the same after a re-run)
            response = response_of(final)
            assert response.seed == seed_of(first.name)
            assert engine.seeds == [response.seed]

    run_async(scenario(), timeout=SLOW)


def test_mask_sequence_uri_from_a_file_an_artifact_and_fsspec_memory(tmp_path):
    config = make_config(tmp_path, "--media-root", str(tmp_path), "--allow-scheme", "memory")
    masks = ball()
    save(masks, tmp_path / "ball.json")
    import fsspec

    with fsspec.open("memory://kmono-test/ball.pb", "wb") as f:
        f.write(dumps(masks, "pb"))

    async def scenario():
        async with serve(config) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            names = []
            for uri in (f"file://{tmp_path / 'ball.json'}", "memory://kmono-test/ball.pb"):
                op = await stub.CreateVideo(
                    video_pb2.CreateVideoRequest(
                        prompt="a ball", mask_sequence_uri=uri, num_inference_steps=1
                    )
                )
                final = (await watch(stub, op.name))[-1]
                assert final.HasField("response"), final.error
                names.append(op.name)
            # the mask_sequence artifact of one job conditions the next
            artifact = f"{names[0]}/artifacts/mask_sequence"
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(
                    prompt="a ball", mask_sequence_uri=artifact, num_inference_steps=1
                )
            )
            final = (await watch(stub, op.name))[-1]
            assert final.HasField("response"), final.error
            assert loads(await download(stub, f"{op.name}/artifacts/mask_sequence"), "pb") == masks

    run_async(scenario(), timeout=SLOW)


def test_artifact_store_on_fsspec_memory(tmp_path):
    store = ArtifactStore("memory://kmono-artifacts")
    artifact = store.put(
        "operations/video-1", "video", video_pb2.ARTIFACT_KIND_VIDEO, "video/mp4", b"0123456789"
    )
    assert artifact.name == "operations/video-1/artifacts/video" and artifact.size_bytes == 10
    assert store.read(artifact.name, 3, 4) == b"3456" and store.size(artifact.name) == 10
    assert store.exists(artifact.name) and not store.exists("operations/video-2/artifacts/video")


# -- cancellation, backpressure, deadlines ----------------------------------------------------------------------


def test_cancel_stops_the_pipeline_within_one_step(tmp_path):
    config = make_config(tmp_path)
    engine = SlowEngine(delay=0.15)

    async def scenario():
        async with serve(config, engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=40, seed=1)
            )
            seen = 0
            async for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name)):
                seen = metadata_of(o).progress.step
                if seen >= 2:
                    break
            await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
            cancelled_at = metadata_of(
                await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
            )
            final = (await watch(stub, op.name))[-1]
            assert final.done and final.error.code == grpc.StatusCode.CANCELLED.value[0]
            stopped = metadata_of(final)
            assert stopped.state == operation_pb2.OPERATION_STATE_CANCELLED
            # within one step of the step current when the cancel landed (+1 for a step already in flight)
            assert stopped.progress.step <= cancelled_at.progress.step + 2 < 40

    run_async(scenario(), timeout=SLOW)


def test_full_queue_is_resource_exhausted_with_retry_info_and_retries_still_dedupe(tmp_path):
    config = make_config(tmp_path, "--max-queued-jobs", "2")
    engine = GatedEngine()

    async def scenario():
        async with serve(config, engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            running = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=1)
            )
            assert await asyncio.to_thread(engine.started.wait, 30)  # claimed: no longer queued
            queued = [
                await stub.CreateVideo(
                    video_pb2.CreateVideoRequest(
                        prompt="a red circle", num_inference_steps=1, request_id=f"q{i}"
                    )
                )
                for i in range(2)
            ]
            for request_id in ("", "new-one"):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.CreateVideo(
                        video_pb2.CreateVideoRequest(
                            prompt="a red circle", num_inference_steps=1, request_id=request_id
                        )
                    )
                assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                retry = find_detail(status_of(error.value), error_details_pb2.RetryInfo)
                assert retry is not None and retry.retry_delay.seconds >= 1
            again = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=1, request_id="q0")
            )
            assert again.name == queued[0].name  # the retry of a queued job is not refused
            engine.gate.release(3)
            for op in (running, *queued):
                final = (await watch(stub, op.name))[-1]
                assert final.HasField("response")
            operations = operations_pb2_grpc.OperationsStub(channel)
            listed = await operations.ListOperations(operations_pb2.ListOperationsRequest(name="operations"))
            assert len(listed.operations) == 3  # the refused ones left nothing behind

    run_async(scenario(), timeout=SLOW)


def test_a_job_past_its_deadline_fails_with_deadline_exceeded(tmp_path):
    config = make_config(tmp_path, "--job-timeout", "0.3")
    engine = SlowEngine(delay=0.2)

    async def scenario():
        async with serve(config, engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=30)
            )
            final = (await watch(stub, op.name))[-1]
            assert final.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            assert (
                metadata_of(final).state == operation_pb2.OPERATION_STATE_FAILED
                and metadata_of(final).progress.step < 30
            )

    run_async(scenario(), timeout=SLOW)


# -- crash recovery ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The video server process with its engine slowed down by `delay` seconds per step (a test engine, never a
# production flag): long enough for a test to kill it mid-job.
SLOW_SERVER = """
import sys, time
from functools import partial
from generation.mvideo.engine import load_mvideo_engine
from libs.serving.service import service_main
from services.video import server

delay = float(sys.argv[1])
class Slow:
    def __init__(self):
        self.inner = load_mvideo_engine(path=None, tiny=True, torch_threads=1)
        self.spec, self.attention = self.inner.spec, self.inner.attention
    def generate(self, job, on_step, on_stage=lambda stage: None):
        def slowed(*args):
            time.sleep(delay)
            on_step(*args)
        return self.inner.generate(job, slowed, on_stage)
build = partial(server.build, load_engines=lambda: {"mvideo": Slow()})
sys.exit(service_main(sys.argv[2:], prog="slow", description="", config_type=server.CONFIG_TYPE, build=build))
"""


def _start_server(tmp_path, port: int, *, step_delay: float = 0.0) -> subprocess.Popen:
    log = open(tmp_path / f"server-{port}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
    program = ["-c", SLOW_SERVER, str(step_delay)] if step_delay else ["-m", "services.video"]
    return subprocess.Popen(
        [sys.executable, *program, "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(tmp_path), "--tiny-engine", "--torch-threads", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _wait_channel(port: int, process: subprocess.Popen, timeout: float = 90) -> grpc.Channel:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "the server exited while starting"
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
            return channel
        except grpc.FutureTimeoutError:
            assert time.monotonic() < deadline, "the server did not start"


def test_kill_9_mid_job_then_restart_finishes_the_job_exactly_once(tmp_path):
    port = _free_port()
    process = _start_server(tmp_path, port, step_delay=0.3)
    try:
        channel = _wait_channel(port, process)
        stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
        request = video_pb2.CreateVideoRequest(
            prompt="a red circle",
            mask_sequence=to_proto(ball()),
            num_inference_steps=12,
            seed=3,
            request_id="kill-me",
        )
        op = stub.CreateVideo(request, timeout=30)
        for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name), timeout=60):
            if metadata_of(o).progress.step >= 2:
                break
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        channel.close()
        with OperationStore(tmp_path / "video" / "operations.sqlite") as store:
            assert store.get(op.name).state is State.RUNNING  # orphaned by the dead process

        process = _start_server(tmp_path, port)
        channel = _wait_channel(port, process)
        stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
        assert stub.CreateVideo(request, timeout=30).name == op.name  # the client's retry finds the same job
        final = list(stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name), timeout=90))[-1]
        assert final.done and final.HasField("response"), final.error
        response = response_of(final)
        assert {a.artifact_id for a in response.artifacts} == {"video", "mask_overlay", "mask_sequence"}
        for artifact in response.artifacts:
            chunks = stub.DownloadArtifact(
                video_pb2.DownloadArtifactRequest(artifact_name=artifact.name), timeout=30
            )
            assert hashlib.sha256(b"".join(c.chunk for c in chunks)).hexdigest() == artifact.sha256
        channel.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with OperationStore(tmp_path / "video" / "operations.sqlite") as store:
        stored = store.get(op.name)
        assert stored.state is State.SUCCEEDED and stored.attempts == 2
        assert len(store.list(KIND)[0]) == 1
    log = b"".join(p.read_bytes() for p in tmp_path.glob("server-*.log")).decode()
    assert log.count(f"{op.name}: 9 frames") == 1  # finished once


# -- invalid requests --------------------------------------------------------------------------------------------


def _reference(data: bytes) -> video_pb2.ReferenceVideo:
    return video_pb2.ReferenceVideo(video=media_pb2.MediaRef(inline_data=data), text_query="ball.")


INVALID = {
    "empty prompt": (video_pb2.CreateVideoRequest(prompt="  "), "prompt"),
    "unknown engine": (video_pb2.CreateVideoRequest(prompt="a ball", engine=42), "engine"),
    "engine not served": (
        video_pb2.CreateVideoRequest(prompt="a ball", engine=video_pb2.ENGINE_VACE),
        "engine",
    ),
    "width disagrees with masks": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(ball()), width=48),
        "width",
    ),
    "frames disagree with masks": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(ball()), num_frames=5),
        "num_frames",
    ),
    "masks of a size the engine cannot take": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(ball(size=40))),
        "mask_sequence",
    ),
    "too many frames": (video_pb2.CreateVideoRequest(prompt="a ball", num_frames=401), "num_frames"),
    "frames the VAE cannot take": (
        video_pb2.CreateVideoRequest(prompt="a ball", num_frames=12),
        "num_frames",
    ),
    "too many mask frames": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(ball(num_frames=21))),
        "mask_sequence",
    ),
    "too many objects": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(ball(objects=3))),
        "mask_sequence.objects",
    ),
    "oversized inline masks": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence=to_proto(noise_masks())),
        "mask_sequence",
    ),
    "corrupt inline masks": (
        video_pb2.CreateVideoRequest(
            prompt="a ball", mask_sequence=media_pb2.MaskSequence(width=32, height=32)
        ),
        "mask_sequence.num_frames",
    ),
    "unreadable mask uri": (
        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence_uri="file:///nonexistent/masks.json"),
        "mask_sequence_uri",
    ),
    "unknown artifact": (
        video_pb2.CreateVideoRequest(
            prompt="a ball", mask_sequence_uri="operations/video-x/artifacts/mask_sequence"
        ),
        "mask_sequence_uri",
    ),
    "unreadable reference video": (
        video_pb2.CreateVideoRequest(prompt="a ball", reference_video=_reference(b"not a video at all")),
        "reference_video.video.inline_data",
    ),
    "reference video without a query": (
        video_pb2.CreateVideoRequest(
            prompt="a ball",
            reference_video=video_pb2.ReferenceVideo(
                video=media_pb2.MediaRef(inline_data=encode_video(np.zeros((2, 16, 16, 3), np.uint8), 8))
            ),
        ),
        "reference_video.text_query",
    ),
    "negative steps": (
        video_pb2.CreateVideoRequest(prompt="a ball", num_inference_steps=-1),
        "num_inference_steps",
    ),
    "nan guidance": (
        video_pb2.CreateVideoRequest(prompt="a ball", guidance_scale=float("nan")),
        "guidance_scale",
    ),
    "backwards schedule": (
        video_pb2.CreateVideoRequest(
            prompt="a ball",
            mask_strength_schedule=video_pb2.MaskStrengthSchedule(start_fraction=0.8, end_fraction=0.2),
        ),
        "mask_strength_schedule.end_fraction",
    ),
}


def test_invalid_requests_are_invalid_argument_naming_the_field(tmp_path):
    config = make_config(tmp_path, "--max-inline-mask-bytes", "2000", "--max-frames", "17")

    async def scenario():
        async with serve(config, GatedEngine()) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            for case, (request, field) in INVALID.items():
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.CreateVideo(request)
                    pytest.fail(f"{case}: accepted")
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
                assert bad_fields(error.value) == [field], (case, error.value.details())
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await download(stub, "not-a-name")
            assert bad_fields(error.value) == ["artifact_name"]
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await download(stub, "operations/video-missing/artifacts/video")
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            operations = operations_pb2_grpc.OperationsStub(channel)
            listed = await operations.ListOperations(operations_pb2.ListOperationsRequest(name="operations"))
            assert list(listed.operations) == []  # nothing was queued

    run_async(scenario(), timeout=SLOW)


# -- a shapes-world pipeline folder (the embedded default's format) -----------------------------------------------


def test_engine_path_loads_a_shapes_pipeline_folder_and_sizes_come_from_its_config(tmp_path):
    from generation.mvideo.jobs import spec_from_dir
    from generation.mvideo.shapes import build_shapes_pipeline

    folder = tmp_path / "shapes"
    build_shapes_pipeline().save_pretrained(
        folder
    )  # no engine.json: the server samples with the call defaults
    spec = spec_from_dir(
        folder, fallback_sampling={"fps": 8.0, "num_inference_steps": 50, "guidance_scale": 6.0}
    )
    assert (spec.width, spec.height, spec.num_frames, spec.num_mask_slots, spec.frame_step) == (
        32,
        32,
        8,
        3,
        1,
    )
    config = make_config(tmp_path, "--no-tiny-engine", "--engine-path", str(folder))
    masks = ball(num_frames=8, objects=3)

    async def scenario():
        registrations, on_startup, on_shutdown = server.build(config)
        async with loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown) as (
            _,
            channel,
        ):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(
                    prompt="a red circle, a blue square and a green diamond",
                    mask_sequence=to_proto(masks),
                    num_inference_steps=2,
                )
            )
            final = (await watch(stub, op.name))[-1]
            assert final.HasField("response"), final.error
            response = response_of(final)
            assert (response.num_frames, response.width) == (8, 32)

    run_async(scenario(), timeout=SLOW)


def test_the_default_engine_loads_from_any_directory_and_the_metadata_names_unknown_prompt_words(
    tmp_path, monkeypatch
):
    """The server's flags with no --engine-path, started in another working directory: the committed shapes
    default loads (its path is absolute). From the job's start on, the metadata names the prompt's words its
    tokenizer does not know, and the warnings teach the words it knows; a queued job has none yet."""
    from transformers import AutoTokenizer

    from generation.mvideo.defaults import SHAPES_DEFAULT_PATH
    from generation.mvideo.vocabulary import known_content_words

    monkeypatch.chdir(tmp_path)
    config = make_config(tmp_path, "--no-tiny-engine")
    assert config.engine_path == str(SHAPES_DEFAULT_PATH) and SHAPES_DEFAULT_PATH.is_absolute()

    async def scenario():
        registrations, on_startup, on_shutdown = server.build(config)
        async with loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown) as (
            _,
            channel,
        ):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            request = video_pb2.CreateVideoRequest(
                prompt="a Purple circle and a crimson square, purple",
                negative_prompt="blur",
                num_inference_steps=2,
            )
            op = await stub.CreateVideo(request)
            assert not metadata_of(op).unknown_words and not metadata_of(op).warnings
            stream = await watch(stub, op.name)
            assert stream[-1].HasField("response"), stream[-1].error
            stepped = [metadata_of(o) for o in stream if metadata_of(o).progress.step >= 1]
            assert stepped and all(list(m.unknown_words) == ["Purple", "crimson"] for m in stepped)
            prompt_line, negative_line = metadata_of(stream[-1]).warnings
            known = known_content_words(AutoTokenizer.from_pretrained(SHAPES_DEFAULT_PATH / "tokenizer"))
            assert (
                prompt_line
                == f"unknown words ignored by this model: Purple, crimson (known: {', '.join(known)})"
            )
            assert negative_line.startswith(
                "unknown words in the negative prompt ignored by this model: blur"
            )

            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a red circle", num_inference_steps=1)
            )
            final = (await watch(stub, op.name))[-1]
            assert final.HasField("response") and not metadata_of(final).warnings
            assert not metadata_of(final).unknown_words

    run_async(scenario(), timeout=SLOW)


class BrokenPromptCheck(SlowEngine):
    """The tiny engine whose prompt check raises: a warning must never fail a job."""

    def check_prompt(self, job):
        raise RuntimeError("the tokenizer is broken")


def test_hostile_prompts_never_fail_a_job_and_their_warnings_stay_bounded(tmp_path):
    from services.video.convert import MAX_PROMPT_CHARS

    prompts = {
        "only unknown words, as long as allowed": ("Zq" * 2 + " ") * (MAX_PROMPT_CHARS // 5),
        "unicode": "紫色的圆 🟣 Ωμέγα \u200b\u202e a\u0301 𝔭𝔲𝔯𝔭𝔩𝔢 \x01",
        "punctuation only": "!?,.;:-_()[]{}" * 10,
    }
    config = make_config(tmp_path)

    async def scenario():
        async with serve(config) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            for name, prompt in prompts.items():
                op = await stub.CreateVideo(
                    video_pb2.CreateVideoRequest(prompt=prompt, num_inference_steps=1)
                )
                final = (await watch(stub, op.name))[-1]
                assert final.HasField("response"), (name, final.error)
                meta = metadata_of(final)
                assert all(len(line) < 4000 and "\n" not in line for line in meta.warnings), name
                assert (not meta.unknown_words) == (name == "punctuation only"), name
        async with serve(config, BrokenPromptCheck(delay=0)) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a 和 circle", num_inference_steps=1)
            )
            final = (await watch(stub, op.name))[-1]
            assert final.HasField("response") and not metadata_of(final).warnings

    run_async(scenario(), timeout=SLOW)


def test_vace_engine_from_a_pipeline_folder_takes_the_same_masks(tmp_path):
    from generation.mvideo.pipelines.testing import tiny_vace_pipeline

    folder = tmp_path / "vace"
    tiny_vace_pipeline().save_pretrained(folder)
    config = make_config(tmp_path, "--vace-path", str(folder), "--max-frames", "256")
    masks = ball(objects=2)

    async def scenario():
        registrations, on_startup, on_shutdown = server.build(config)
        async with loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown) as (
            _,
            channel,
        ):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            vace = video_pb2.CreateVideoRequest(
                prompt="a red ball", engine=video_pb2.ENGINE_VACE, mask_sequence=to_proto(masks),
                num_inference_steps=2, guidance_scale=1.0, seed=3,
            )  # fmt: skip
            op = await stub.CreateVideo(vace)
            stream = await watch(stub, op.name)
            final = stream[-1]
            assert final.HasField("response"), final.error
            assert [metadata_of(o).progress.step for o in stream][-1] == 2
            response = response_of(final)
            assert response.engine == video_pb2.ENGINE_VACE and response.model_version == "vace-vace"
            assert (response.num_frames, response.width, response.height) == (9, 32, 32)
            (tmp_path / "v.mp4").write_bytes(await download(stub, f"{op.name}/artifacts/video"))
            assert read_video(tmp_path / "v.mp4")[0].shape == (9, 32, 32, 3)
            # VACE does not continue clips: longer than its one 81-frame clip is refused, MVideo takes it
            for engine, accepted in ((video_pb2.ENGINE_VACE, False), (video_pb2.ENGINE_MVIDEO, True)):
                long = video_pb2.CreateVideoRequest(prompt="a ball", engine=engine, num_frames=85, width=32,
                                                    height=32, num_inference_steps=1)  # fmt: skip
                if accepted:
                    await stub.CreateVideo(long)
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.CreateVideo(long)
                assert bad_fields(error.value) == ["num_frames"] and "one clip" in error.value.details()

    run_async(scenario(), timeout=SLOW)


def test_reference_video_masks_are_extracted_then_fitted_to_the_output(tmp_path):
    config = make_config(tmp_path, "--tiny-masks")
    frames = np.full((6, 48, 64, 3), 90, np.uint8)
    for t in range(6):
        frames[t, 10:30, 5 + 4 * t : 25 + 4 * t] = (200, 60, 40)
    reference = _reference(encode_video(frames, fps=8, format="mp4"))

    async def scenario():
        async with serve(config) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(
                    prompt="a red ball", num_inference_steps=1, reference_video=reference
                )
            )
            stream = await watch(stub, op.name)
            final = stream[-1]
            if final.HasField("error"):  # the random tiny detector may find nothing: then the query is blamed
                assert final.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
                assert "reference_video.text_query" in final.error.message
                return
            assert "extracting masks" in [metadata_of(o).progress.stage for o in stream]
            masks = loads(await download(stub, f"{op.name}/artifacts/mask_sequence"), "pb")
            assert (masks.num_frames, masks.width, masks.height) == (9, 32, 32)
            assert 1 <= len(masks.objects) <= TINY_SPEC.num_mask_slots

    run_async(scenario(), timeout=SLOW)


def test_bad_environment_defaults_are_usage_errors_naming_the_flag(monkeypatch, capsys):
    monkeypatch.setenv("KMONO_VIDEO_JOB_TIMEOUT", "nan")
    monkeypatch.setenv("KMONO_VIDEO_MAX_FRAMES", "0")
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)  # building the parser does not fail on a bad value
    assert parser.parse_args(["--job-timeout", "5", "--max-frames", "9"]).max_frames == 9
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--max-frames", "9"])
    assert exit_.value.code == 2
    assert "--job-timeout: expected a number >= 0, got nan" in capsys.readouterr().err
