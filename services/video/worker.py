"""The CreateVideo job runner: claims queued operations from the store and runs the warm pipeline on them.

Same shape as services/masks/worker.py: one asyncio task (started by the server's start-up hook once the engine
has loaded, after `recover()` has re-queued jobs a dead process left RUNNING) claims the oldest QUEUED
`video.create` operation and runs it in a thread, one job at a time: one warm pipeline per process (per
device); jobs run in creation order.

After every denoising step the job thread records monotonic progress (step, total, ETA) and, every
`preview_every` steps, a low-res preview in `CreateVideoMetadata` (store writes throttled to `progress_interval`
plus the last step), and checks, in this order, the server's stop flag, the operation's cancel flag and the
job's deadline; each raises out of the pipeline's step callback, so it takes effect within one step. Endings:

- success: artifacts written (video MP4, mask overlay MP4 and mask sequence when there was a mask condition),
  metadata SUCCEEDED, then `finish(attempt=...)` with `CreateVideoResponse`;
- cancellation: metadata CANCELLED, then `mark_cancelled`;
- deadline: FAILED with DEADLINE_EXCEEDED; a bad input found only now (an unreadable mask URI, a reference video
  with no objects): FAILED with INVALID_ARGUMENT naming the field; anything else: FAILED, INTERNAL;
- server shutdown: the job goes back to QUEUED (`requeue`) and runs again in the next process.

Every store write carries the claim's attempt number, so a stale attempt (its job re-queued underneath it)
can never finish the operation twice; artifacts are overwritten by name, so a re-run leaves one set.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2
from kmono.common.v1 import operation_pb2
from kmono.video.v1 import video_pb2

from libs.media import MaskSequence, dumps, encode_video, render_overlay
from libs.serving import DeadlineExceededError, InvalidArgumentError, status_from_exception
from libs.serving.operations import Operation as StoredOperation
from libs.serving.operations import (
    OperationError,
    OperationNotFoundError,
    OperationStore,
    StaleAttemptError,
    pack_any,
)
from services.video import convert
from services.video.artifacts import ArtifactStore
from services.video.engine import Engine

logger = logging.getLogger(__name__)

KIND = "video.create"


class _Cancelled(Exception):
    """The client cancelled the operation."""


class _Interrupted(Exception):
    """The server is shutting down; the operation goes back to the queue."""


class _TimedOut(Exception):
    """The job ran past its deadline."""


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def encode_previews(frames: np.ndarray, count: int, max_edge: int, step: int) -> list[video_pb2.PreviewFrame]:
    """`count` frames of a (T, H, W, 3) uint8 preview, evenly sampled, as PNGs no larger than `max_edge`."""
    from PIL import Image

    indices = np.linspace(0, len(frames) - 1, max(1, count)).round().astype(int)
    out = []
    for index in dict.fromkeys(indices.tolist()):
        image = Image.fromarray(frames[index])
        if max(image.size) > max_edge:
            image.thumbnail((max_edge, max_edge))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(
            video_pb2.PreviewFrame(
                step=step,
                frame_index=int(index),
                image_data=buffer.getvalue(),
                mime_type="image/png",
                width=image.size[0],
                height=image.size[1],
            )
        )
    return out


class _Reporter:
    """Writes CreateVideoMetadata for one claimed operation (throttled) and checks stop/cancel/deadline."""

    def __init__(
        self,
        store: OperationStore,
        op: StoredOperation,
        stop: threading.Event,
        interval: float,
        deadline: float | None,
        engine: int,
    ) -> None:
        self.store, self.op, self.stop, self.interval = store, op, stop, interval
        self.deadline = deadline
        self.engine = engine
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.last_write = 0.0
        self.step, self.total = 0, 0
        self.stage = "starting"
        self.previews: list[video_pb2.PreviewFrame] = []
        self.preview_count, self.preview_edge = 1, 128
        self.denoise_started: float | None = None
        self.pending = False
        self.closed = False
        self._lock = threading.Lock()

    def metadata(self, state: int, *, end: bool) -> bytes:
        fraction = self.step / self.total if self.total else 0.0
        if state == operation_pb2.OPERATION_STATE_SUCCEEDED:
            fraction = 1.0
        progress = operation_pb2.Progress(
            step=self.step, total_steps=self.total, fraction=fraction, stage=self.stage
        )
        if 0 < fraction < 1 and self.denoise_started is not None:
            elapsed = time.monotonic() - self.denoise_started
            eta = duration_pb2.Duration()
            eta.FromNanoseconds(int(elapsed / fraction * (1 - fraction) * 1e9))
            progress.eta.CopyFrom(eta)
        now = time.time()
        meta = video_pb2.CreateVideoMetadata(
            state=state,
            progress=progress,
            preview_frames=self.previews,
            create_time=_timestamp(self.op.create_time),
            start_time=_timestamp(self.started_wall),
            update_time=_timestamp(now),
            engine=self.engine,
        )
        if end:
            meta.end_time.CopyFrom(_timestamp(now))
        return pack_any(meta)

    def write(self, state: int, stage: str | None = None, *, end: bool = False) -> None:
        with self._lock:
            if stage is not None:
                self.stage = stage
            self._write(state, end)

    def _write(self, state: int, end: bool) -> None:
        if self.closed:
            return
        fraction = self.step / self.total if self.total else 0.0
        if state == operation_pb2.OPERATION_STATE_SUCCEEDED:
            fraction = 1.0
        self.closed = end
        self.store.update_progress(
            self.op.name, fraction, self.metadata(state, end=end), attempt=self.op.attempts
        )
        self.last_write = time.monotonic()
        self.pending = False

    def check(self) -> None:
        """Raise if the job must stop now: server stopping, cancellation requested, deadline passed."""
        if self.stop.is_set():
            raise _Interrupted
        if self.store.is_cancel_requested(self.op.name):
            raise _Cancelled
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _TimedOut

    def on_step(self, step: int, total: int, preview: np.ndarray | None) -> None:
        """The engine's per-step callback (job thread)."""
        with self._lock:
            self.step, self.total = max(self.step, step), total
            if preview is not None:
                self.previews = encode_previews(preview, self.preview_count, self.preview_edge, step)
            self.pending = True
        self.check()
        if step == total or preview is not None or time.monotonic() - self.last_write >= self.interval:
            self.write(operation_pb2.OPERATION_STATE_RUNNING)

    def flush(self) -> None:
        with self._lock, contextlib.suppress(OperationError):
            if self.pending:
                self._write(operation_pb2.OPERATION_STATE_RUNNING, False)


class VideoWorker:
    """Runs queued CreateVideo operations one at a time; `start`/`stop` are the server's hooks."""

    def __init__(
        self,
        store: OperationStore,
        artifacts: ArtifactStore,
        load_engines: Callable[[], dict[str, Engine]],
        *,
        limits: convert.RequestLimits | None = None,
        load_extractor: Callable[[], Any] | None = None,
        job_timeout: float | None = None,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self._load_engines = load_engines
        self.engines: dict[str, Engine] = {}
        self.limits = limits or convert.RequestLimits()
        self._load_extractor = load_extractor
        self._extractor: Any = None
        self.job_timeout = job_timeout or None
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self._stop = threading.Event()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.busy = False

    @property
    def specs(self) -> dict[str, Any]:
        return {name: engine.spec for name, engine in self.engines.items()}

    async def start(self) -> None:
        """Load the engines (once), re-queue jobs a dead process left RUNNING, start the loop."""
        if not self.engines:
            logger.info("loading the video engines")
            self.engines = await asyncio.to_thread(self._load_engines)
        requeued = await asyncio.to_thread(self.store.recover)
        if requeued:
            logger.info("re-queued %d interrupted video jobs", len(requeued))
        self._stop.clear()
        self._event_loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="video-worker")

    async def stop(self) -> None:
        """Stop claiming; a running job stops at its next step and goes back to the queue."""
        self._stop.set()
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job thread runs (it may outlive a cancelled `stop`); False if one still runs."""
        return self._idle.wait(timeout)

    def wake(self) -> None:
        """A job was queued: claim it now rather than at the next poll (safe from any thread)."""
        if self._wakeup is not None and self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._wakeup.set)

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while not self._stop.is_set():
            try:
                op = await asyncio.to_thread(self.store.claim_next, KIND)
            except Exception:
                logger.exception("claiming a video job failed; retrying")
                op = None
            if op is None:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wakeup.wait()
                continue
            request = video_pb2.CreateVideoRequest.FromString(op.request)
            deadline = time.monotonic() + self.job_timeout if self.job_timeout else None
            engine_enum = convert.ENGINE_ENUMS.get(convert.ENGINE_NAMES.get(request.engine, ""), 0)
            reporter = _Reporter(self.store, op, self._stop, self.progress_interval, deadline, engine_enum)
            self.busy = True
            self._idle.clear()
            try:
                job = asyncio.ensure_future(asyncio.to_thread(self._guarded_run, op, request, reporter))
                while not job.done():
                    await asyncio.wait({job}, timeout=self.progress_interval)
                    if not job.done():
                        await asyncio.to_thread(reporter.flush)
                await job
            finally:
                self.busy = False

    def _extract(self, plan: convert.Plan, reporter: _Reporter) -> MaskSequence:
        """Masks of the plan's reference video (the extractor loads on first use)."""
        from services.masks.worker import video_file

        if self._extractor is None:
            if self._load_extractor is None:
                raise InvalidArgumentError.single("reference_video", "this server does not extract masks")
            self._extractor = self._load_extractor()
        ref = plan.reference
        assert ref is not None
        from kmono.masks.v1 import masks_pb2

        request = masks_pb2.ExtractMasksRequest(
            text_query=ref.text_query, box_threshold=ref.box_threshold, text_threshold=ref.text_threshold
        )

        def on_frame(done: int, total: int | None, objects: int) -> None:
            reporter.check()

        with video_file(ref.video) as path:
            seq = self._extractor.extract(path, request, on_frame)
        if not seq.objects:
            raise InvalidArgumentError.single(
                "reference_video.text_query", f"found no {ref.text_query!r} in the reference video"
            )
        return convert.fit_masks(seq, plan.width, plan.height, plan.num_frames, plan.spec.num_mask_slots)

    def _guarded_run(
        self, op: StoredOperation, request: video_pb2.CreateVideoRequest, reporter: _Reporter
    ) -> None:
        try:
            self._run(op, request, reporter)
        finally:
            self._idle.set()

    def _run(self, op: StoredOperation, request: video_pb2.CreateVideoRequest, reporter: _Reporter) -> None:
        """One claimed operation, start to end (in a worker thread)."""
        try:
            reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "starting")
            plan = convert.resolve(request, self.specs, self.limits, self.artifacts)
            masks = plan.masks
            if plan.reference is not None:
                reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "extracting masks")
                masks = self._extract(plan, reporter)
            seed = plan.seed if plan.seed is not None else _seed_of(op.name)
            job = plan.job(request.prompt, request.negative_prompt, seed, masks)
            reporter.total = job.num_inference_steps
            reporter.preview_count, reporter.preview_edge = job.preview_frames, job.preview_max_edge
            reporter.denoise_started = time.monotonic()
            reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "denoising")
            reporter.check()
            frames = self.engines[plan.engine].generate(job, reporter.on_step)
            reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "encoding")
            artifacts = self._write_artifacts(op.name, frames, masks, job.fps)
            response = video_pb2.CreateVideoResponse(
                artifacts=artifacts,
                seed=seed,
                width=job.width,
                height=job.height,
                num_frames=int(frames.shape[0]),
                fps=job.fps,
                engine=convert.ENGINE_ENUMS[plan.engine],
                model_version=plan.spec.model_version,
            )
            reporter.write(operation_pb2.OPERATION_STATE_SUCCEEDED, "done", end=True)
            self.store.finish(op.name, pack_any(response), attempt=op.attempts)
            logger.info("%s: %d frames %dx%d, seed %d", op.name, frames.shape[0], job.width, job.height, seed)
        except _Interrupted:
            logger.info("%s: server stopping, back to the queue", op.name)
            self._quietly(self.store.requeue, op.name, attempt=op.attempts)
        except _Cancelled:
            self._quietly(reporter.write, operation_pb2.OPERATION_STATE_CANCELLED, "cancelled", end=True)
            self._quietly(self.store.mark_cancelled, op.name, attempt=op.attempts)
            logger.info("%s: cancelled at step %d", op.name, reporter.step)
        except (StaleAttemptError, OperationNotFoundError) as exc:
            logger.warning("%s: dropping the result of a stale attempt: %s", op.name, exc)
        except Exception as exc:
            if isinstance(exc, _TimedOut):
                error: Exception = DeadlineExceededError(
                    f"the job ran past its deadline of {self.job_timeout:g} s at step {reporter.step}"
                )
            elif isinstance(exc, InvalidArgumentError | OperationError):
                error = exc
            else:
                logger.exception("%s failed", op.name)
                error = exc
            status = status_from_exception(error)
            self._quietly(reporter.write, operation_pb2.OPERATION_STATE_FAILED, "failed", end=True)
            details = [detail.SerializeToString() for detail in status.details]
            self._quietly(
                self.store.fail, op.name, status.code, status.message, details=details, attempt=op.attempts
            )

    def _write_artifacts(
        self, name: str, frames: np.ndarray, masks: MaskSequence | None, fps: float
    ) -> list[video_pb2.Artifact]:
        put = self.artifacts.put
        out = [
            put(name, "video", video_pb2.ARTIFACT_KIND_VIDEO, "video/mp4", encode_video(frames, fps, "mp4"))
        ]
        if masks is not None:
            overlay = render_overlay(frames, masks, labels=False)
            out.append(
                put(
                    name,
                    "mask_overlay",
                    video_pb2.ARTIFACT_KIND_MASK_OVERLAY_VIDEO,
                    "video/mp4",
                    encode_video(overlay, fps, "mp4"),
                )
            )
            out.append(
                put(
                    name,
                    "mask_sequence",
                    video_pb2.ARTIFACT_KIND_MASK_SEQUENCE,
                    "application/x-protobuf",
                    dumps(masks, "pb"),
                )
            )
        return out

    @staticmethod
    def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except OperationError as exc:
            logger.warning("%s: %s", getattr(call, "__name__", call), exc)


def _seed_of(name: str) -> int:
    """A seed for a request that gave none: fixed per operation, so a re-run after a crash renders the same video."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


__all__ = ["KIND", "VideoWorker", "encode_previews"]
