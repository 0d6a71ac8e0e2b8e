"""The ExtractMasks job runner: claims queued operations from the store and runs the extractor on them.

One asyncio task (started by the server's startup hook, after the engine has loaded) loops: claim the oldest
QUEUED `masks.extract` operation, run it in a worker thread so the event loop keeps serving RPCs, report
progress, finish. One job at a time: one warm extractor per process (per device).

Per frame the thread reports monotonic progress (frames done / frames in the video) and the number of
objects seen so far in `ExtractMasksMetadata` (store writes at most every `progress_interval` seconds, and
at the last frame), and checks the operation's cancellation flag. Endings:

- success: metadata SUCCEEDED, then `finish` with `ExtractMasksResponse`;
- cancellation requested (CancelOperation on a RUNNING job): the thread stops between frames, metadata
  CANCELLED, then `mark_cancelled`;
- a bad input found only while decoding (a corrupt video): FAILED with INVALID_ARGUMENT and a BadRequest
  naming `video`; any other exception: FAILED with INTERNAL under an error id (traceback in the log);
- server shutdown: the thread stops between frames and the operation goes back to QUEUED (`requeue`), so the
  next process (whose start-up `recover()` also re-queues jobs of a process that died) runs it again.

A worker whose attempt went stale (its job was re-queued underneath it) drops its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from google.protobuf import duration_pb2, timestamp_pb2
from kmono.common.v1 import media_pb2, operation_pb2
from kmono.masks.v1 import masks_pb2

from generation.masks import edit
from libs.media import MaskSequence, MaskSequenceBuilder, to_proto
from libs.serving import InvalidArgumentError, status_from_exception
from libs.serving.operations import Operation as StoredOperation
from libs.serving.operations import (
    OperationError,
    OperationNotFoundError,
    OperationStore,
    StaleAttemptError,
    pack_any,
)

logger = logging.getLogger(__name__)

KIND = "masks.extract"
DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_MERGE_IOU = 0.5


class _Cancelled(Exception):
    """The client cancelled the operation."""


class _Interrupted(Exception):
    """The server is shutting down; the operation goes back to the queue."""


FrameCallback = Callable[[int, int | None, int], None]
"""on_frame(frames_done, total_frames or None, objects_seen); may raise to stop the extraction."""


class Engine(Protocol):
    """What the worker needs from the extractor: masks of a video file for a request, frame by frame."""

    def extract(
        self, video_path: str, request: masks_pb2.ExtractMasksRequest, on_frame: FrameCallback
    ) -> MaskSequence: ...


@dataclass
class ExtractorEngine:
    """`Engine` over a loaded `generation.masks.MaskExtractor` (its session API, for per-frame progress)."""

    extractor: Any
    window: int | None = 100

    def extract(
        self, video_path: str, request: masks_pb2.ExtractMasksRequest, on_frame: FrameCallback
    ) -> MaskSequence:
        from generation.masks import MaskExtractor, TrackerConfig

        extractor = self.extractor
        if request.merge_iou_threshold:
            config = TrackerConfig(
                iou_threshold=request.merge_iou_threshold,
                max_missed_detections=extractor.tracker_config.max_missed_detections,
                max_lost_frames=extractor.tracker_config.max_lost_frames,
            )
            extractor = MaskExtractor(extractor.detector, extractor.propagator, tracker_config=config)
        session = extractor.start(video_path)
        session.detect(
            request.text_query,
            0,
            box_threshold=request.box_threshold or DEFAULT_BOX_THRESHOLD,
            text_threshold=request.text_threshold or DEFAULT_TEXT_THRESHOLD,
        )
        builder = MaskSequenceBuilder(session.width, session.height, session.fps)
        seen: set[int] = set()
        frames = session.propagate(
            redetect_every=request.redetect_every_n_frames or None,
            window=self.window,
            reverse=request.reverse_pass,
        )
        for done, result in enumerate(frames, start=1):
            builder.add_frame(result.id_map, scores=dict(zip(result.object_ids, result.scores, strict=True)))
            seen.update(result.object_ids)
            on_frame(done, session.num_frames, len(seen))
        return builder.build(session.objects())


def load_extractor_engine(
    *,
    tiny: bool,
    grounding_model: str,
    sam2_model: str,
    device: str | None = None,
    dtype: str = "auto",
    torch_threads: int = 0,
    window: int | None = 100,
) -> ExtractorEngine:
    """Load the extractor's models once (tiny random ones, or `from_pretrained` ids/directories)."""
    import torch

    from generation.masks import MaskExtractor

    if torch_threads:
        torch.set_num_threads(torch_threads)
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    if tiny:
        extractor = MaskExtractor.tiny(device=device or "cpu", dtype=torch_dtype)
    else:
        extractor = MaskExtractor.from_pretrained(
            grounding_model, sam2_model, device=device, dtype=torch_dtype
        )
    return ExtractorEngine(extractor, window=window or None)


def file_uri_path(uri: str) -> Path | None:
    """The local path of a `file://` URI (or of a bare absolute path); None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if not parsed.scheme and uri.startswith("/"):
        return Path(uri)
    return None


@contextlib.contextmanager
def video_file(video: media_pb2.MediaRef) -> Iterator[str]:
    """A local file holding the request's video: the URI's path, or inline bytes in a temporary file."""
    if video.WhichOneof("source") == "uri":
        path = file_uri_path(video.uri)
        if path is None:
            raise InvalidArgumentError.single("video.uri", f"unsupported URI {video.uri!r}; use file://")
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="kmono-masks-") as tmp:
        path = Path(tmp, "video")
        path.write_bytes(video.inline_data)
        yield os.fspath(path)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class _Reporter:
    """Writes ExtractMasksMetadata for one claimed operation (throttled), and checks cancel/stop flags."""

    def __init__(self, store: OperationStore, op: StoredOperation, stop: threading.Event, interval: float):
        self.store, self.op, self.stop, self.interval = store, op, stop, interval
        self.started = time.monotonic()
        self.last_write = 0.0
        self.step, self.total, self.objects = 0, 0, 0
        self.pending = False  # progress newer than what the store has
        self.closed = False  # the final metadata is written: no more writes
        self._lock = threading.Lock()

    def metadata(self, state: int, *, stage: str, end: bool = False) -> bytes:
        fraction = self.step / self.total if self.total else 0.0
        if state == operation_pb2.OPERATION_STATE_SUCCEEDED:
            fraction = 1.0
        progress = operation_pb2.Progress(
            step=self.step, total_steps=self.total, fraction=fraction, stage=stage
        )
        if 0 < fraction < 1:
            elapsed = time.monotonic() - self.started
            eta = duration_pb2.Duration()
            eta.FromNanoseconds(int(elapsed / fraction * (1 - fraction) * 1e9))
            progress.eta.CopyFrom(eta)
        now = time.time()
        meta = masks_pb2.ExtractMasksMetadata(
            state=state,
            progress=progress,
            num_objects=self.objects,
            create_time=_timestamp(self.op.create_time),
            update_time=_timestamp(now),
        )
        if end:
            meta.end_time.CopyFrom(_timestamp(now))
        return pack_any(meta)

    def write(self, state: int, stage: str, *, end: bool = False) -> None:
        """Store the metadata; `end` writes the final one, after which nothing is written any more."""
        with self._lock:
            self._write(state, stage, end)

    def _write(self, state: int, stage: str, end: bool) -> None:
        if self.closed:
            return
        fraction = self.step / self.total if self.total else 0.0
        if state == operation_pb2.OPERATION_STATE_SUCCEEDED:
            fraction = 1.0
        self.closed = end
        self.store.update_progress(
            self.op.name, fraction, self.metadata(state, stage=stage, end=end), attempt=self.op.attempts
        )
        self.last_write = time.monotonic()
        self.pending = False

    def frame(self, done: int, total: int | None, objects: int) -> None:
        """The engine's per-frame callback (job thread): record, check stop and cancel, write if due."""
        with self._lock:
            self.step, self.total, self.objects = done, total or 0, objects
            self.pending = True
        if self.stop.is_set():
            raise _Interrupted
        if self.store.is_cancel_requested(self.op.name):
            raise _Cancelled
        if done == self.total or time.monotonic() - self.last_write >= self.interval:
            self.write(operation_pb2.OPERATION_STATE_RUNNING, "extracting masks")

    def flush(self) -> None:
        """Store progress the throttle held back (called every `interval` while the job runs)."""
        with self._lock, contextlib.suppress(OperationError):  # OperationError: the job ended meanwhile
            if self.pending:
                self._write(operation_pb2.OPERATION_STATE_RUNNING, "extracting masks", False)


class ExtractionWorker:
    """Runs queued ExtractMasks operations one at a time; `start`/`stop` are the server's hooks."""

    def __init__(
        self,
        store: OperationStore,
        load_engine: Callable[[], Engine],
        *,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
    ) -> None:
        self.store = store
        self._load_engine = load_engine
        self.engine: Engine | None = None
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self._stop = threading.Event()
        # Set while no job thread runs: a thread can outlive a `stop` cancelled by the shutdown budget.
        self._idle = threading.Event()
        self._idle.set()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the engine (once), re-queue jobs a dead process left RUNNING, start the loop."""
        if self.engine is None:
            logger.info("loading the mask extractor")
            self.engine = await asyncio.to_thread(self._load_engine)
        requeued = await asyncio.to_thread(self.store.recover)
        if requeued:
            logger.info("re-queued %d interrupted extractions", len(requeued))
        self._stop.clear()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="masks-extraction-worker")

    async def stop(self) -> None:
        """Stop claiming; a running job stops at its next frame and goes back to the queue."""
        self._stop.set()
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """A job was queued: claim it now rather than at the next poll."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while not self._stop.is_set():
            try:
                op = await asyncio.to_thread(self.store.claim_next, KIND)
            except Exception:
                logger.exception("claiming an extraction failed; retrying")
                op = None
            if op is None:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wakeup.wait()
                continue
            reporter = _Reporter(self.store, op, self._stop, self.progress_interval)
            self._idle.clear()
            job = asyncio.ensure_future(asyncio.to_thread(self._run_tracked, op, reporter))
            while not job.done():
                await asyncio.wait({job}, timeout=self.progress_interval)
                if not job.done():
                    await asyncio.to_thread(reporter.flush)
            await job

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job thread runs; False if one still runs after `timeout` seconds."""
        return self._idle.wait(timeout)

    def _run_tracked(self, op: StoredOperation, reporter: _Reporter) -> None:
        try:
            self._run(op, reporter)
        finally:
            self._idle.set()

    def _run(self, op: StoredOperation, reporter: _Reporter) -> None:
        """One claimed operation, start to end (in a worker thread)."""
        try:
            reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "starting")
            request = masks_pb2.ExtractMasksRequest.FromString(op.request)
            assert self.engine is not None
            with video_file(request.video) as path:
                seq = self.engine.extract(path, request, reporter.frame)
            if request.max_objects and len(seq.objects) > request.max_objects:
                best = sorted(seq.objects, key=lambda o: (-o.score, o.id))[: request.max_objects]
                seq = edit.select_objects(seq, object_ids=[o.id for o in best])
            reporter.objects = len(seq.objects)
            response = masks_pb2.ExtractMasksResponse(mask_sequence=to_proto(seq))
            reporter.write(operation_pb2.OPERATION_STATE_SUCCEEDED, "done", end=True)
            self.store.finish(op.name, pack_any(response), attempt=op.attempts)
            logger.info("%s: %d frames, %d objects", op.name, seq.num_frames, len(seq.objects))
        except _Interrupted:
            self._give_back(op)
        except _Cancelled:
            self._ending(op, reporter, operation_pb2.OPERATION_STATE_CANCELLED, "cancelled")
            self._quietly(self.store.mark_cancelled, op.name, attempt=op.attempts)
        except (StaleAttemptError, OperationNotFoundError) as exc:
            logger.warning("%s: dropping the result of a stale attempt: %s", op.name, exc)
        except Exception as exc:
            if isinstance(exc, InvalidArgumentError):
                error = exc
            elif isinstance(exc, ValueError) and not isinstance(exc, OperationError):
                error = InvalidArgumentError.single("video", str(exc))
            else:
                error = exc
            status = status_from_exception(error)
            self._ending(op, reporter, operation_pb2.OPERATION_STATE_FAILED, "failed")
            details = [detail.SerializeToString() for detail in status.details]
            self._quietly(
                self.store.fail, op.name, status.code, status.message, details=details, attempt=op.attempts
            )

    def _ending(self, op: StoredOperation, reporter: _Reporter, state: int, stage: str) -> None:
        self._quietly(reporter.write, state, stage, end=True)

    def _give_back(self, op: StoredOperation) -> None:
        logger.info("%s: server stopping, back to the queue", op.name)
        self._quietly(self.store.requeue, op.name, attempt=op.attempts)

    @staticmethod
    def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except OperationError as exc:  # the operation was deleted or re-queued underneath us
            logger.warning("%s: %s", getattr(call, "__name__", call), exc)
