"""The ExtractMasks job runner: claims queued operations from the store and runs the mask engine on them.

The loop, the throttled progress writes, the job deadline and the endings are
`libs.serving.operations.OperationWorker`'s (one job at a time: one warm extractor per process, per device);
this module runs one stored `ExtractionJob` through `generation.masks.engine.MaskEngine` and says what its
metadata holds: monotonic progress (frames done / frames in the video) and the objects seen so far. Endings:

- success: metadata SUCCEEDED, then `finish` with `ExtractMasksResponse`;
- cancellation requested (CancelOperation on a RUNNING job): the thread stops between frames, CANCELLED;
- a bad input found only while decoding (a corrupt video): FAILED with INVALID_ARGUMENT naming `video`;
  anything else: FAILED with INTERNAL under an error id (traceback in the log);
- server shutdown: the thread stops between frames and the operation goes back to QUEUED, so the next process
  runs it again (from frame 0; the metadata's step and fraction stay at the furthest reached until the re-run
  passes it);
- endings the store makes alone (cancelled while QUEUED, failed by `recover`): the last metadata with the new
  state and `end_time` (`OperationWorker.metadata_for`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from kmono.masks.v1 import masks_pb2

from generation.masks.engine import ExtractionJob, FrameCallback
from libs.media import MaskSequence, to_proto
from libs.media.policy import public_message
from libs.serving import InvalidArgumentError
from libs.serving.operations import Operation as StoredOperation
from libs.serving.operations import OperationError, OperationStore, OperationWorker, ProgressReporter
from libs.serving.operations.payload import load_job

logger = logging.getLogger(__name__)

KIND = "masks.extract"


class Engine(Protocol):
    """What the worker needs: `generation.masks.engine.MaskEngine` (tests pass scripted ones)."""

    def extract(self, job: ExtractionJob, on_frame: FrameCallback) -> MaskSequence: ...


class _Reporter(ProgressReporter):
    """ExtractMasksMetadata of one claimed operation: frames done of the video, objects seen so far."""

    objects = 0

    def metadata(self, state: int, *, end: bool) -> masks_pb2.ExtractMasksMetadata:
        return masks_pb2.ExtractMasksMetadata(
            state=state, progress=self.progress(state), num_objects=self.objects, **self.stamps(end)
        )

    def frame(self, done: int, total: int | None, objects: int) -> None:
        """The engine's per-frame callback (job thread): record, check stop and cancel, write if due."""
        with self.lock:
            self.objects, self.stage = objects, "extracting masks"
        self.advance(done, total or 0)


class ExtractionWorker(OperationWorker[_Reporter]):
    """Runs queued ExtractMasks operations one at a time; `start`/`stop` are the server's hooks."""

    metadata_type = masks_pb2.ExtractMasksMetadata  # the store's own endings update it (`metadata_for`)

    def __init__(
        self,
        store: OperationStore,
        load_engine: Callable[[], Engine],
        *,
        job_timeout: float | None = None,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
    ) -> None:
        super().__init__(
            store,
            KIND,
            poll_interval,
            progress_interval,
            task_name="masks-extraction-worker",
            job_timeout=job_timeout,
        )
        self._load_engine = load_engine
        self.engine: Engine | None = None

    async def load(self) -> None:
        logger.info("loading the mask extractor")
        self.engine = await asyncio.to_thread(self._load_engine)

    def reporter_for(self, op: StoredOperation) -> _Reporter:
        return _Reporter(self.store, op, self.stopping, self.progress_interval)

    def run(self, op: StoredOperation, reporter: _Reporter) -> masks_pb2.ExtractMasksResponse:
        job = load_job(ExtractionJob, op.request)
        assert self.engine is not None
        seq = self.engine.extract(job, reporter.frame)
        reporter.objects = len(seq.objects)
        logger.info("%s: %d frames, %d objects", op.name, seq.num_frames, len(seq.objects))
        return masks_pb2.ExtractMasksResponse(mask_sequence=to_proto(seq))

    def error_for(self, exc: Exception, reporter: _Reporter) -> Exception:
        """A ValueError found only while decoding (a corrupt video) is the client's: INVALID_ARGUMENT `video`."""
        if isinstance(exc, ValueError) and not isinstance(exc, InvalidArgumentError | OperationError):
            return InvalidArgumentError.single("video", public_message(str(exc)))
        return exc
