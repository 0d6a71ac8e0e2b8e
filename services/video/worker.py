"""The CreateVideo job runner: claims queued operations from the store and runs the warm engine on them.

The loop, the throttled progress writes and the endings are `libs.serving.operations.OperationWorker`'s, as
for services/masks/worker.py: claim the oldest QUEUED `video.create` operation (after `recover()` has re-queued
jobs a dead process left RUNNING), run it in a thread, one job at a time: one warm pipeline per process (per
device); jobs run in creation order. This module loads the engines, hands each stored `VideoJob` (planned once,
by the servicer) to its engine (`generation.mvideo.engine`), fills the metadata and stores the artifacts.

When a job starts, the engine's `check_prompt` names what its model will not read of the text (prompt words its
tokenizer does not know, text past its window); the metadata carries it from then on (`unknown_words`,
`warnings`). Our choice: it is computed in the job thread, not when CreateVideo is called, so the pipeline's
tokenizer is never used by two threads at once; a queued job has no warnings yet.

After every denoising step the job thread records monotonic progress (step, total, ETA) and, every
`preview_every` steps, a low-res preview in `CreateVideoMetadata` (store writes throttled to `progress_interval`
plus the last step), and checks, in this order, the server's stop flag, the operation's cancel flag and the
job's deadline; each raises out of the pipeline's step callback, so it takes effect within one step. Endings:

- success: artifacts written (video MP4, mask overlay MP4 and mask sequence when there was a mask condition),
  metadata SUCCEEDED, then `finish(attempt=...)` with `CreateVideoResponse`;
- cancellation: metadata CANCELLED, then `mark_cancelled`;
- deadline: FAILED with DEADLINE_EXCEEDED; a bad input found only now (an unreadable mask URI, a reference video
  with no objects): FAILED with INVALID_ARGUMENT naming the field; anything else: FAILED, INTERNAL;
- server shutdown: the job goes back to QUEUED (`requeue`) and runs again in the next process;
- endings the store makes alone (cancelled while QUEUED, re-queued or failed by `recover` after a crash): the
  last metadata with the new state, `end_time` and no queue position (`OperationWorker.metadata_for`).

A re-run after a restart starts again at step 0 (no checkpoint); the metadata's step and fraction stay at the
furthest an earlier attempt reached until the re-run passes it, the stage saying `(attempt N: redoing step s of
S)` meanwhile (`ProgressReporter`), so progress never goes back.

Every store write carries the claim's attempt number, so a stale attempt (its job re-queued underneath it)
can never finish the operation twice; artifacts are overwritten by name, so a re-run leaves one set.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np
from kmono.common.v1 import operation_pb2
from kmono.video.v1 import video_pb2

from generation.mvideo.engine import GeneratedVideo, StageCallback, StepCallback
from generation.mvideo.jobs import EngineSpec, VideoJob
from generation.mvideo.vocabulary import PromptCheck
from libs.errors import FieldError
from libs.media import MaskSequence, dumps, encode_video, render_overlay
from libs.serving.inputs import field_violation
from libs.serving.operations import Operation as StoredOperation
from libs.serving.operations import OperationStore, OperationWorker, ProgressReporter
from libs.serving.operations.payload import load_job
from libs.serving.operations.worker import timestamp
from services.video import convert
from services.video.artifacts import ArtifactStore

logger = logging.getLogger(__name__)

KIND = "video.create"


class Engine(Protocol):
    """What the worker needs: `generation.mvideo.engine.PipelineEngine` (tests pass scripted ones)."""

    spec: EngineSpec
    attention: str
    """The attention backend in use (reported in every response)."""

    def check_prompt(self, job: VideoJob) -> PromptCheck:
        """What the model will not read of the job's text (optional: scripted engines may leave it out)."""
        ...

    def generate(
        self, job: VideoJob, on_step: StepCallback, on_stage: StageCallback = ...
    ) -> GeneratedVideo: ...


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


class _Reporter(ProgressReporter):
    """CreateVideoMetadata of one claimed operation: denoising steps, previews; also checks the deadline."""

    def __init__(
        self,
        store: OperationStore,
        op: StoredOperation,
        stop: threading.Event,
        interval: float,
        job: VideoJob,
    ) -> None:
        super().__init__(store, op, stop, interval)
        self.job = job
        self.engine = convert.ENGINE_ENUMS[job.engine]
        self.started_wall = time.time()
        self.eta_origin = None  # set when denoising starts
        self.previews: list[video_pb2.PreviewFrame] = []
        self.preview_count, self.preview_edge = 1, 128
        self.prompt_check = PromptCheck()

    def metadata(self, state: int, *, end: bool) -> video_pb2.CreateVideoMetadata:
        return video_pb2.CreateVideoMetadata(
            state=state,
            progress=self.progress(state),
            preview_frames=self.previews,
            start_time=timestamp(self.started_wall),
            engine=self.engine,
            unknown_words=self.prompt_check.unknown_words,
            warnings=self.prompt_check.warnings,
            **self.stamps(end),
        )

    def on_stage(self, stage: str) -> None:
        """The engine's stage callback (job thread): write the stage when it changes, check stop and cancel."""
        if stage != self.stage:
            self.write(operation_pb2.OPERATION_STATE_RUNNING, stage)
        self.check()

    def on_step(self, step: int, total: int, preview: np.ndarray | None) -> None:
        """The engine's per-step callback (job thread)."""
        if preview is not None:
            previews = encode_previews(preview, self.preview_count, self.preview_edge, step)
            with self.lock:
                self.previews = previews
        self.advance(step, total, force=preview is not None)


class VideoWorker(OperationWorker[_Reporter]):
    """Runs queued CreateVideo operations one at a time; `start`/`stop` are the server's hooks."""

    metadata_type = video_pb2.CreateVideoMetadata  # the store's own endings update it (`metadata_for`)

    def __init__(
        self,
        store: OperationStore,
        artifacts: ArtifactStore,
        load_engines: Callable[[], dict[str, Engine]],
        *,
        job_timeout: float | None = None,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
    ) -> None:
        super().__init__(
            store, KIND, poll_interval, progress_interval, task_name="video-worker", job_timeout=job_timeout
        )
        self.artifacts = artifacts
        self._load_engines = load_engines
        self.engines: dict[str, Engine] = {}

    @property
    def specs(self) -> dict[str, EngineSpec]:
        return {name: engine.spec for name, engine in self.engines.items()}

    async def load(self) -> None:
        logger.info("loading the video engines")
        self.engines = await asyncio.to_thread(self._load_engines)

    def reporter_for(self, op: StoredOperation) -> _Reporter:
        job = load_job(VideoJob, op.request)
        reporter = _Reporter(self.store, op, self.stopping, self.progress_interval, job)
        reporter.total = job.num_inference_steps
        reporter.preview_count, reporter.preview_edge = job.preview_frames, job.preview_max_edge
        return reporter

    def run(self, op: StoredOperation, reporter: _Reporter) -> video_pb2.CreateVideoResponse:
        job = reporter.job
        if job.seed is None:
            job = replace(job, seed=seed_of(op.name))
        engine = self.engines[job.engine]
        reporter.eta_origin = time.monotonic()
        reporter.check()
        self._check_prompt(engine, job, reporter)
        video = engine.generate(job, reporter.on_step, reporter.on_stage)
        reporter.write(operation_pb2.OPERATION_STATE_RUNNING, "encoding")
        artifacts = self._write_artifacts(op.name, video.frames, video.masks, job.fps)
        logger.info(
            "%s: %d frames %dx%d, seed %d", op.name, len(video.frames), job.width, job.height, job.seed
        )
        return video_pb2.CreateVideoResponse(
            artifacts=artifacts,
            seed=job.seed,
            width=job.width,
            height=job.height,
            num_frames=int(video.frames.shape[0]),
            fps=job.fps,
            engine=convert.ENGINE_ENUMS[job.engine],
            model_version=engine.spec.model_version,
            attention_backend=engine.attention,
        )

    def _check_prompt(self, engine: Engine, job: VideoJob, reporter: _Reporter) -> None:
        """Put what the model will not read of the job's text in the metadata, before the first step. A warning
        never fails a job: should the check itself raise, the job runs without it (logged)."""
        check_prompt = getattr(engine, "check_prompt", None)  # scripted test engines may have none
        if check_prompt is None:
            return
        try:
            prompt_check = check_prompt(job)
        except Exception:
            logger.warning("checking the prompt of %s failed; no warnings", reporter.op.name, exc_info=True)
            return
        with reporter.lock:
            reporter.prompt_check = prompt_check
        reporter.write(operation_pb2.OPERATION_STATE_RUNNING)

    def error_for(self, exc: Exception, reporter: _Reporter) -> Exception:
        if isinstance(exc, FieldError):  # a bad input found only now (a reference video with no such object)
            return field_violation(exc, renames={"reference": "reference_video"})
        return exc

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


def seed_of(name: str) -> int:
    """A seed for a request that gave none: fixed per operation, so a re-run after a crash renders the same video."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


__all__ = ["KIND", "VideoWorker", "encode_previews", "seed_of"]
