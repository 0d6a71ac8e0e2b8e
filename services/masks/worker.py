"""The ExtractMasks job runner: claims queued operations from the store and runs the extractor on them.

The loop, the throttled progress writes and the endings are `libs.serving.operations.OperationWorker`'s (one
job at a time: one warm extractor per process, per device); this module loads the extractor once, runs one
`masks.extract` operation and says what its metadata holds. Per frame the thread reports monotonic progress
(frames done / frames in the video) and the number of objects seen so far in `ExtractMasksMetadata` (store
writes at most every `progress_interval` seconds, and at the last frame), and checks the server's stop flag
and the operation's cancellation flag. Endings:

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2

from generation.masks import edit
from libs.media import MaskSequence, MaskSequenceBuilder, to_proto
from libs.serving import InvalidArgumentError
from libs.serving.operations import Operation as StoredOperation
from libs.serving.operations import OperationError, OperationStore, OperationWorker, ProgressReporter

logger = logging.getLogger(__name__)

KIND = "masks.extract"
DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_MERGE_IOU = 0.5


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
    from generation.masks import load_extractor

    extractor = load_extractor(
        tiny=tiny,
        grounding=grounding_model,
        sam2=sam2_model,
        device=device,
        dtype=dtype,
        threads=torch_threads,
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

    def __init__(
        self,
        store: OperationStore,
        load_engine: Callable[[], Engine],
        *,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
    ) -> None:
        super().__init__(store, KIND, poll_interval, progress_interval, task_name="masks-extraction-worker")
        self._load_engine = load_engine
        self.engine: Engine | None = None

    async def load(self) -> None:
        logger.info("loading the mask extractor")
        self.engine = await asyncio.to_thread(self._load_engine)

    def reporter_for(self, op: StoredOperation) -> _Reporter:
        return _Reporter(self.store, op, self.stopping, self.progress_interval)

    def run(self, op: StoredOperation, reporter: _Reporter) -> masks_pb2.ExtractMasksResponse:
        request = masks_pb2.ExtractMasksRequest.FromString(op.request)
        assert self.engine is not None
        with video_file(request.video) as path:
            seq = self.engine.extract(path, request, reporter.frame)
        if request.max_objects and len(seq.objects) > request.max_objects:
            best = sorted(seq.objects, key=lambda o: (-o.score, o.id))[: request.max_objects]
            seq = edit.select_objects(seq, object_ids=[o.id for o in best])
        reporter.objects = len(seq.objects)
        logger.info("%s: %d frames, %d objects", op.name, seq.num_frames, len(seq.objects))
        return masks_pb2.ExtractMasksResponse(mask_sequence=to_proto(seq))

    def error_for(self, exc: Exception, reporter: _Reporter) -> Exception:
        """A ValueError found only while decoding (a corrupt video) is the client's: INVALID_ARGUMENT `video`."""
        if isinstance(exc, ValueError) and not isinstance(exc, InvalidArgumentError | OperationError):
            return InvalidArgumentError.single("video", str(exc))
        return exc
