"""VideoGenerationService handlers: proto messages in, operations out (checks in convert.py, work in worker.py).

- CreateVideo validates the request and plans its job once (INVALID_ARGUMENT naming the field), refuses
  with RESOURCE_EXHAUSTED + RetryInfo when `max_queued_jobs` jobs already wait, stores a QUEUED `video.create`
  operation (AIP-155: the same `request_id` with the same request returns the same operation, even when the
  queue is full; with another request, ALREADY_EXISTS) with the planned job as its payload, and wakes the
  worker. It returns at once.
- WatchOperation streams an operation: its current state at once, then every change, ending with `done`.
- DownloadArtifact streams an artifact's bytes from the artifact store in chunks (default 1 MiB, capped at 3 MiB
  so a chunk stays under gRPC's 4 MiB message limit), from `read_offset`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.longrunning import operations_pb2
from google.protobuf import timestamp_pb2
from kmono.common.v1 import operation_pb2
from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.serving import NotFoundError
from libs.serving.inputs import invalid
from libs.serving.operations import (
    OperationStore,
    State,
    check_queue,
    create_queued,
    pack_any,
    to_operation_proto,
    unpack_any,
    watch_operation,
)
from libs.serving.operations.payload import dump_job
from services.video import convert
from services.video.artifacts import OPERATION_NAME, ArtifactStore, parse_artifact_name
from services.video.worker import KIND, VideoWorker

DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 3 << 20


class VideoGenerationServicer(video_pb2_grpc.VideoGenerationServiceServicer):
    def __init__(
        self,
        store: OperationStore,
        worker: VideoWorker,
        artifacts: ArtifactStore,
        limits: convert.RequestLimits,
        *,
        max_queued_jobs: int,
        watch_interval: float = 0.05,
        max_watch_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.worker = worker
        self.artifacts = artifacts
        self.limits = limits
        self.max_queued_jobs = max_queued_jobs
        self.watch_interval = watch_interval
        self.max_watch_interval = max_watch_interval

    # -- CreateVideo ---------------------------------------------------------------------------------------

    async def CreateVideo(
        self, request: video_pb2.CreateVideoRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        return await asyncio.to_thread(self._create, request)

    def _create(self, request: video_pb2.CreateVideoRequest) -> operations_pb2.Operation:
        queue = dict(max_queued=self.max_queued_jobs, reason="VIDEO_QUEUE_FULL", noun="video jobs")
        depth = check_queue(
            self.store, KIND, request_id=request.request_id, **queue
        )  # cheap, before validating
        job = convert.video_job(request, self.worker.specs, self.limits, self.artifacts)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        metadata = video_pb2.CreateVideoMetadata(
            state=operation_pb2.OPERATION_STATE_QUEUED,
            progress=operation_pb2.Progress(total_steps=job.num_inference_steps, stage="queued"),
            queue_position=depth,
            create_time=now,
            update_time=now,
            engine=convert.ENGINE_ENUMS[job.engine],
        )
        op, _ = create_queued(
            self.store,
            KIND,
            dump_job(job),
            request.request_id or None,
            request.SerializeToString(deterministic=True),
            metadata=pack_any(metadata),
            **queue,
        )
        return to_operation_proto(op)  # the store's change notification wakes the worker

    # -- WatchOperation ------------------------------------------------------------------------------------

    async def WatchOperation(
        self, request: video_pb2.WatchOperationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operations_pb2.Operation]:
        interval, max_interval = self.watch_interval, self.max_watch_interval
        async for op in watch_operation(
            self.store, request.name, interval=interval, max_interval=max_interval
        ):
            yield op

    # -- DownloadArtifact ----------------------------------------------------------------------------------

    def _artifact(self, request: video_pb2.DownloadArtifactRequest) -> video_pb2.Artifact:
        which = request.WhichOneof("target")
        if which is None:
            raise invalid("operation_name", "set operation_name or artifact_name")
        target = getattr(request, which)
        if which == "operation_name":
            if not OPERATION_NAME.match(target):
                raise invalid("operation_name", f"not an operation name: {target!r}")
            operation, artifact_id = target, None
        else:
            parsed = parse_artifact_name(target)
            if parsed is None:
                raise invalid(
                    "artifact_name", f"not an artifact name (operations/{{id}}/artifacts/{{id}}): {target!r}"
                )
            operation, artifact_id = parsed
        op = self.store.get(operation)  # NOT_FOUND when there is no such operation
        if op.state is not State.SUCCEEDED or not op.result:
            raise NotFoundError(
                f"{operation} has no artifacts (it is {op.state.value})", reason="NO_ARTIFACTS"
            )
        response = unpack_any(op.result, video_pb2.CreateVideoResponse)
        for artifact in response.artifacts:
            if artifact_id is None and artifact.kind == video_pb2.ARTIFACT_KIND_VIDEO:
                return artifact
            if artifact.artifact_id == artifact_id:
                return artifact
        raise NotFoundError(f"{target} does not exist", reason="ARTIFACT_NOT_FOUND")

    async def DownloadArtifact(
        self, request: video_pb2.DownloadArtifactRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[video_pb2.DownloadArtifactResponse]:
        if request.chunk_size < 0:
            raise invalid("chunk_size", f"must be >= 0, got {request.chunk_size}")
        if request.read_offset < 0:
            raise invalid("read_offset", f"must be >= 0, got {request.read_offset}")
        artifact = await asyncio.to_thread(self._artifact, request)
        total = artifact.size_bytes
        if request.read_offset > total:
            raise invalid("read_offset", f"past the end of the artifact ({total} bytes)")
        chunk = min(request.chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
        offset = request.read_offset
        while offset < total or (offset == 0 and total == 0):
            data = await asyncio.to_thread(self.artifacts.read, artifact.name, offset, chunk)
            if not data and total:
                raise NotFoundError(f"{artifact.name} is shorter than recorded", reason="ARTIFACT_TRUNCATED")
            yield video_pb2.DownloadArtifactResponse(
                chunk=data,
                offset=offset,
                total_size=total,
                mime_type=artifact.mime_type,
                artifact_name=artifact.name,
            )
            offset += len(data)
            if total == 0:
                return
