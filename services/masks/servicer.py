"""MaskService handlers: proto messages in, generation/masks calls out (conversions and checks in convert.py).

- ExtractMasks validates the request (query, video readable and within the size limit, thresholds), stores
  it as a QUEUED `masks.extract` operation (AIP-155: the same `request_id` with the same request returns the
  same operation; with another request, ALREADY_EXISTS) and wakes the worker (worker.py), which runs it.
- WatchOperation streams an operation: its current state at once, then every change of state or metadata,
  ending with the message whose `done` is true.
- EditMasks, ComposeMasks and SynthesizeMasks run in a worker thread (they decode and encode every frame),
  so the event loop keeps serving while they work.

Every bad input is INVALID_ARGUMENT with a `BadRequest.FieldViolation` naming the request field; a request
over the size limit (frames x width x height, in or out) is INVALID_ARGUMENT with reason
MASK_SEQUENCE_TOO_LARGE naming the field that makes it so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.longrunning import operations_pb2
from google.protobuf import timestamp_pb2
from kmono.common.v1 import operation_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc

from generation.masks.compose import compose
from generation.masks.synth import synthesize
from libs.errors import FieldError
from libs.media import to_proto
from libs.media.policy import MediaPolicy
from libs.serving.inputs import SizeLimits, field_violation
from libs.serving.operations import (
    OperationStore,
    check_queue,
    create_queued,
    pack_any,
    to_operation_proto,
    watch_operation,
)
from libs.serving.operations.payload import dump_job
from services.masks import convert
from services.masks.worker import KIND, ExtractionWorker


class MaskServicer(masks_pb2_grpc.MaskServiceServicer):
    def __init__(
        self,
        store: OperationStore,
        worker: ExtractionWorker,
        limits: SizeLimits,
        *,
        max_queued_jobs: int,
        media: MediaPolicy,
        watch_interval: float = 0.05,
        max_watch_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.worker = worker
        self.limits = limits
        self.max_queued_jobs = max_queued_jobs
        self.media = media
        self.watch_interval = watch_interval
        self.max_watch_interval = max_watch_interval

    # -- ExtractMasks --------------------------------------------------------------------------------------

    async def ExtractMasks(
        self, request: masks_pb2.ExtractMasksRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        return await asyncio.to_thread(self._create, request)

    def _create(self, request: masks_pb2.ExtractMasksRequest) -> operations_pb2.Operation:
        queue = dict(max_queued=self.max_queued_jobs, reason="MASKS_QUEUE_FULL", noun="mask extraction jobs")
        check_queue(self.store, KIND, request_id=request.request_id, **queue)  # cheap, before validating
        job = convert.extraction_job(request, self.limits, self.media)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        metadata = masks_pb2.ExtractMasksMetadata(
            state=operation_pb2.OPERATION_STATE_QUEUED,
            progress=operation_pb2.Progress(stage="queued"),
            create_time=now,
            update_time=now,
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
        self, request: masks_pb2.WatchOperationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operations_pb2.Operation]:
        interval, max_interval = self.watch_interval, self.max_watch_interval
        async for op in watch_operation(
            self.store, request.name, interval=interval, max_interval=max_interval
        ):
            yield op

    # -- unary edits ---------------------------------------------------------------------------------------

    async def EditMasks(
        self, request: masks_pb2.EditMasksRequest, context: grpc.aio.ServicerContext
    ) -> masks_pb2.EditMasksResponse:
        return await asyncio.to_thread(self._edit, request)

    def _edit(self, request: masks_pb2.EditMasksRequest) -> masks_pb2.EditMasksResponse:
        steps = convert.edit_steps(request, self.limits)  # the cheap checks before decoding the sequence
        seq = convert.mask_sequence(request.mask_sequence, "mask_sequence", self.limits)
        for step in steps:
            seq = step.run(seq, self.limits)
        return masks_pb2.EditMasksResponse(mask_sequence=to_proto(seq))

    async def ComposeMasks(
        self, request: masks_pb2.ComposeMasksRequest, context: grpc.aio.ServicerContext
    ) -> masks_pb2.ComposeMasksResponse:
        return await asyncio.to_thread(self._compose, request)

    def _compose(self, request: masks_pb2.ComposeMasksRequest) -> masks_pb2.ComposeMasksResponse:
        layers, kwargs = convert.compose_args(request, self.limits)
        try:
            result = compose(layers, **kwargs)
        except FieldError as exc:
            raise field_violation(exc) from None
        mappings = [
            masks_pb2.ObjectIdMapping(
                layer_index=m.layer_index, source_object_id=m.source_object_id, object_id=m.object_id
            )
            for m in result.mappings
        ]
        return masks_pb2.ComposeMasksResponse(
            mask_sequence=to_proto(result.sequence), object_id_mappings=mappings
        )

    async def SynthesizeMasks(
        self, request: masks_pb2.SynthesizeMasksRequest, context: grpc.aio.ServicerContext
    ) -> masks_pb2.SynthesizeMasksResponse:
        return await asyncio.to_thread(self._synthesize, request)

    def _synthesize(self, request: masks_pb2.SynthesizeMasksRequest) -> masks_pb2.SynthesizeMasksResponse:
        objects = convert.synth_args(request, self.limits)
        try:
            seq = synthesize(
                objects,
                width=request.width,
                height=request.height,
                num_frames=request.num_frames,
                fps=request.fps,
            )
        except FieldError as exc:
            raise convert.synth_error(exc) from None
        return masks_pb2.SynthesizeMasksResponse(mask_sequence=to_proto(seq))
