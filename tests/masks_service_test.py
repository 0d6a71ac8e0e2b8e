"""MaskService over loopback gRPC: edit/compose/synth round trips, the ExtractMasks long-running operation with
the tiny extractor on a tiny MP4 (create -> watch -> done), request_id idempotency, cancellation, recovery
after a crash, and INVALID_ARGUMENT naming the field for every kind of bad input."""

from __future__ import annotations

import argparse
import asyncio
import threading
import uuid

import grpc
import numpy as np
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import error_details_pb2
from kmono.common.v1 import media_pb2, operation_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc

from generation.masks import edit
from generation.masks.compose import Layer, compose
from generation.masks.engine import ExtractionJob
from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.testing import moving_boxes
from generation.masks.trajectory import Trajectory
from libs.media import MaskSequenceBuilder, encode_video, from_proto, to_proto
from libs.serving import find_detail
from libs.serving.operations import OperationStore, State, unpack_any
from libs.serving.operations.payload import dump_job
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from services.masks import server
from services.masks.worker import KIND
from tests.fakes import service_config

SLOW = 180.0  # the tiny extractor shares 2 cores with other test runs


def make_config(tmp_path, *extra: str):
    return service_config(server, tmp_path, "--tiny-models", *extra)


def tiny_video(num_frames: int = 4) -> bytes:
    frames = np.zeros((num_frames, 48, 64, 3), np.uint8)
    for t in range(num_frames):
        frames[t, 10:30, 5 + 4 * t : 25 + 4 * t] = (200, 60, 40)
    return encode_video(frames, fps=8, format="mp4")


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = status_of(error)
    assert status is not None
    detail = find_detail(status, error_details_pb2.BadRequest)
    assert detail is not None, status
    return [violation.field for violation in detail.field_violations]


class ScriptedEngine:
    """Stands in for the extractor where a test must control timing: one frame per `release()`."""

    def __init__(self, num_frames: int = 5) -> None:
        self.num_frames = num_frames
        self.gate = threading.Semaphore(0)
        self.started = threading.Event()

    def release(self, frames: int = 1) -> None:
        for _ in range(frames):
            self.gate.release()

    def extract(self, job, on_frame):
        self.started.set()
        builder = MaskSequenceBuilder(8, 8, 4)
        for t in range(self.num_frames):
            if not self.gate.acquire(timeout=30):
                raise TimeoutError("the test never released the frame")
            id_map = np.zeros((8, 8), np.int32)
            id_map[t : t + 2, 1:3] = 1
            builder.add_frame(id_map)
            on_frame(t + 1, self.num_frames, 1)
        return builder.build()


def serve(config, **build_kwargs):
    registrations, on_startup, on_shutdown = server.build(config, **build_kwargs)
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


# -- unary round trips -----------------------------------------------------------------------------------------


def test_edit_compose_and_synthesize_round_trip(tmp_path):
    source = moving_boxes()
    path = Trajectory([(0, (0, 0)), (5, (6, 2))], "smooth")
    edits = [
        masks_pb2.MaskEdit(select_objects=masks_pb2.MaskEdit.SelectObjects(object_ids=[1, 2])),
        masks_pb2.MaskEdit(
            translate=masks_pb2.MaskEdit.Translate(
                object_ids=[1],
                offset_trajectory=masks_pb2.PointTrajectory(
                    keyframes=[
                        masks_pb2.PointKeyframe(frame_index=0),
                        masks_pb2.PointKeyframe(frame_index=5, x=6, y=2),
                    ],
                    interpolation=masks_pb2.INTERPOLATION_SMOOTH,
                ),
            )
        ),
        masks_pb2.MaskEdit(retime=masks_pb2.MaskEdit.Retime(speed=2)),
        masks_pb2.MaskEdit(reverse=masks_pb2.MaskEdit.Reverse()),
        masks_pb2.MaskEdit(dilate=masks_pb2.MaskEdit.Morphology(radius_pixels=1)),
        masks_pb2.MaskEdit(relabel_objects=masks_pb2.MaskEdit.RelabelObjects(labels={1: "puppy"})),
        masks_pb2.MaskEdit(loop=masks_pb2.MaskEdit.Loop(repeat_count=2, ping_pong=True)),
        masks_pb2.MaskEdit(
            time_warp=masks_pb2.MaskEdit.TimeWarp(
                source_frames=masks_pb2.ScalarTrajectory(
                    keyframes=[
                        masks_pb2.ScalarKeyframe(frame_index=0),
                        masks_pb2.ScalarKeyframe(frame_index=6, value=4),
                    ]
                )
            )
        ),
    ]
    expected = edit.translate(edit.select_objects(source, [1, 2]), path, object_ids=[1])
    expected = edit.relabel_objects(edit.dilate(edit.reverse(edit.retime(expected, 2)), 1), {1: "puppy"})
    expected = edit.time_warp(edit.loop(expected, 2, ping_pong=True), Trajectory([(0, 0.0), (6, 4.0)]))

    ball = synthesize(
        [SyntheticObject("circle", Trajectory([(0, (4, 4)), (5, (20, 12))]), width=6, label="ball")],
        width=32,
        height=24,
        num_frames=6,
        fps=8,
    )
    template = masks_pb2.MaskTemplate(mask_sequence=to_proto(source), object_id=1, frame_index=0)

    async def scenario():
        async with serve(make_config(tmp_path)) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            reply = await stub.EditMasks(
                masks_pb2.EditMasksRequest(mask_sequence=to_proto(source), edits=edits)
            )
            assert from_proto(reply.mask_sequence) == expected

            synth = await stub.SynthesizeMasks(
                masks_pb2.SynthesizeMasksRequest(
                    width=32,
                    height=24,
                    num_frames=6,
                    fps=8,
                    objects=[
                        masks_pb2.SyntheticObject(
                            shape=masks_pb2.SHAPE_CIRCLE,
                            label="ball",
                            width=6,
                            center_trajectory=masks_pb2.PointTrajectory(
                                keyframes=[
                                    masks_pb2.PointKeyframe(frame_index=0, x=4, y=4),
                                    masks_pb2.PointKeyframe(frame_index=5, x=20, y=12),
                                ]
                            ),
                        ),
                        masks_pb2.SyntheticObject(
                            shape=masks_pb2.SHAPE_MASK,
                            mask_template=template,
                            center_trajectory=masks_pb2.PointTrajectory(
                                keyframes=[masks_pb2.PointKeyframe(frame_index=0, x=26, y=18)]
                            ),
                        ),
                    ],
                )
            )
            drawn = from_proto(synth.mask_sequence)
            assert edit.select_objects(drawn, [1]) == edit.select_objects(ball, [1])
            assert drawn.objects[1].label == "dog" and drawn.area(0, 2) == 24

            composed = await stub.ComposeMasks(
                masks_pb2.ComposeMasksRequest(
                    layers=[
                        masks_pb2.MaskLayer(mask_sequence=to_proto(source), z_order=1),
                        masks_pb2.MaskLayer(mask_sequence=synth.mask_sequence, start_frame=2),
                    ],
                    fps=16,
                )
            )
            local = compose([Layer(source, 1), Layer(drawn, 0, 2)], fps=16)
            assert from_proto(composed.mask_sequence) == local.sequence
            assert [
                (m.layer_index, m.source_object_id, m.object_id) for m in composed.object_id_mappings
            ] == [(m.layer_index, m.source_object_id, m.object_id) for m in local.mappings]

    run_async(scenario(), timeout=SLOW)


# -- ExtractMasks ---------------------------------------------------------------------------------------------------


def test_extract_masks_create_watch_done_with_the_tiny_extractor(tmp_path):
    video = tiny_video(4)

    async def scenario():
        async with serve(make_config(tmp_path)) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            request = masks_pb2.ExtractMasksRequest(
                video=media_pb2.MediaRef(inline_data=video, mime_type="video/mp4"),
                text_query="a red ball.",
                redetect_every_n_frames=2,
                request_id=str(uuid.uuid4()),
            )
            created = await stub.ExtractMasks(request)
            assert created.name.startswith("operations/masks-") and not created.done
            first_meta = unpack_any(created.metadata.SerializeToString(), masks_pb2.ExtractMasksMetadata)
            assert first_meta.state == operation_pb2.OPERATION_STATE_QUEUED

            again = await stub.ExtractMasks(request)  # AIP-155: same request_id, same operation
            assert again.name == created.name

            seen = [
                op async for op in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=created.name))
            ]
            assert seen[-1].done and all(not op.done for op in seen[:-1])
            metas = [masks_pb2.ExtractMasksMetadata() for _ in seen]
            for meta, op in zip(metas, seen, strict=True):
                op.metadata.Unpack(meta)
            fractions = [m.progress.fraction for m in metas]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
            assert metas[-1].state == operation_pb2.OPERATION_STATE_SUCCEEDED and metas[-1].HasField(
                "end_time"
            )
            assert metas[-1].progress.total_steps == 4 and metas[-1].progress.step == 4

            response = masks_pb2.ExtractMasksResponse()
            assert seen[-1].response.Unpack(response)
            seq = from_proto(response.mask_sequence)
            assert (seq.num_frames, seq.width, seq.height, seq.fps) == (4, 64, 48, 8.0)
            assert metas[-1].num_objects == len(seq.objects)

            polled = await operations.GetOperation(operations_pb2.GetOperationRequest(name=created.name))
            assert polled.done and polled.response == seen[-1].response

            again = await stub.ExtractMasks(request)  # still the same operation once done
            assert again.name == created.name and again.done

            conflicting = masks_pb2.ExtractMasksRequest()
            conflicting.CopyFrom(request)
            conflicting.text_query = "a dog."
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.ExtractMasks(conflicting)
            assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS

            limited = masks_pb2.ExtractMasksRequest()
            limited.CopyFrom(request)
            limited.request_id, limited.max_objects = "", 1
            op = await stub.ExtractMasks(limited)
            last = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=op.name))][-1]
            last.response.Unpack(response)
            assert len(from_proto(response.mask_sequence).objects) <= 1

    run_async(scenario(), timeout=SLOW)


def test_cancel_running_and_queued_operations_while_the_loop_stays_responsive(tmp_path):
    engine = ScriptedEngine(num_frames=5)
    video = tiny_video(2)

    async def scenario():
        async with serve(make_config(tmp_path), load_engine=lambda: engine) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            request = masks_pb2.ExtractMasksRequest(
                video=media_pb2.MediaRef(inline_data=video), text_query="a red ball."
            )
            running = await stub.ExtractMasks(request)
            queued = await stub.ExtractMasks(request)  # no request_id: a second operation
            assert queued.name != running.name
            assert await asyncio.to_thread(engine.started.wait, 30)
            engine.release(2)

            # the extraction runs in a thread: unary calls are served meanwhile, while it still waits for
            # frames 3-5 (an extraction that blocked the event loop would have timed out and failed first)
            reply = await stub.EditMasks(
                masks_pb2.EditMasksRequest(
                    mask_sequence=to_proto(moving_boxes()),
                    edits=[masks_pb2.MaskEdit(reverse=masks_pb2.MaskEdit.Reverse())],
                )
            )
            assert reply.mask_sequence.num_frames == 6
            still = await operations.GetOperation(operations_pb2.GetOperationRequest(name=running.name))
            assert not still.done

            watch = stub.WatchOperation(masks_pb2.WatchOperationRequest(name=running.name))
            async for op in watch:
                meta = masks_pb2.ExtractMasksMetadata()
                op.metadata.Unpack(meta)
                if meta.progress.step >= 1:  # writes are throttled: step 2 may not be stored yet
                    break
            watch.cancel()

            await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=queued.name))
            cancelled = await operations.GetOperation(operations_pb2.GetOperationRequest(name=queued.name))
            assert cancelled.done and cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]

            await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=running.name))
            engine.release(3)
            final = [
                op async for op in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=running.name))
            ][-1]
            assert final.done and final.error.code == grpc.StatusCode.CANCELLED.value[0]
            meta = masks_pb2.ExtractMasksMetadata()
            final.metadata.Unpack(meta)
            assert meta.state == operation_pb2.OPERATION_STATE_CANCELLED and 1 <= meta.progress.step < 5

    run_async(scenario(), timeout=SLOW)


def test_an_operation_interrupted_by_a_crash_is_recovered_at_start_up(tmp_path):
    config = make_config(tmp_path)
    request = masks_pb2.ExtractMasksRequest(
        video=media_pb2.MediaRef(inline_data=tiny_video(2)), text_query="a ball.", request_id="crashed-once"
    )
    with OperationStore(config.operations_db("masks")) as store:
        job = ExtractionJob(video=request.video.inline_data, query=request.text_query)
        fingerprint = request.SerializeToString(deterministic=True)
        op, _ = store.create(KIND, dump_job(job), request.request_id, request_fingerprint=fingerprint)
        store.claim_next(KIND)  # the worker that claimed it "died" here
        assert store.get(op.name).state is State.RUNNING

    engine = ScriptedEngine(num_frames=2)
    engine.release(2)

    async def scenario():
        async with serve(config, load_engine=lambda: engine) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            final = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=op.name))][-1]
            assert final.done and final.HasField("response")

    run_async(scenario(), timeout=SLOW)
    with OperationStore(config.operations_db("masks")) as store:
        assert store.get(op.name).attempts == 2


def test_shutdown_puts_a_running_job_back_in_the_queue(tmp_path):
    config = make_config(tmp_path)
    engine = ScriptedEngine(num_frames=3)

    async def scenario():
        async with serve(config, load_engine=lambda: engine) as (srv, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            request = masks_pb2.ExtractMasksRequest(
                video=media_pb2.MediaRef(inline_data=tiny_video(2)), text_query="a ball."
            )
            op = await stub.ExtractMasks(request)
            assert await asyncio.to_thread(engine.started.wait, 30)
            # the next frame arrives while the server stops: the worker sees the stop flag there
            asyncio.get_running_loop().call_later(0.3, engine.release, 3)
            await srv.stop(10)
            return op.name

    name = run_async(scenario(), timeout=SLOW)
    with OperationStore(config.operations_db("masks")) as store:
        assert store.get(name).state is State.QUEUED


# -- invalid input ------------------------------------------------------------------------------------------------


def _seq_msg():
    return to_proto(moving_boxes())


def _bad_sequences():
    wrong_count = _seq_msg()
    wrong_count.num_frames = 5
    wrong_size = _seq_msg()
    wrong_size.frames[2].object_masks[0].rle.height = 99
    unknown_object = _seq_msg()
    unknown_object.frames[1].object_masks[0].object_id = 7
    no_fps = _seq_msg()
    no_fps.fps = 0
    return wrong_count, wrong_size, unknown_object, no_fps


def _edit(**kwargs) -> masks_pb2.EditMasksRequest:
    return masks_pb2.EditMasksRequest(mask_sequence=_seq_msg(), edits=[masks_pb2.MaskEdit(**kwargs)])


def _point_path(*frames: int) -> masks_pb2.PointTrajectory:
    return masks_pb2.PointTrajectory(
        keyframes=[masks_pb2.PointKeyframe(frame_index=f, x=1, y=1) for f in frames]
    )


def _synth(**overrides) -> masks_pb2.SynthesizeMasksRequest:
    obj = {"shape": masks_pb2.SHAPE_CIRCLE, "width": 4, "center_trajectory": _point_path(0)}
    obj.update(overrides.pop("object", {}))
    fields = {
        "width": 16,
        "height": 16,
        "num_frames": 4,
        "fps": 8,
        "objects": [masks_pb2.SyntheticObject(**obj)],
    }
    fields.update(overrides)
    return masks_pb2.SynthesizeMasksRequest(**fields)


WRONG_COUNT, WRONG_SIZE, UNKNOWN_OBJECT, NO_FPS = _bad_sequences()
T = masks_pb2.MaskEdit
INVALID = [
    # EditMasks
    ("EditMasks", masks_pb2.EditMasksRequest(), "mask_sequence"),
    ("EditMasks", masks_pb2.EditMasksRequest(mask_sequence=WRONG_COUNT), "mask_sequence.num_frames"),
    (
        "EditMasks",
        masks_pb2.EditMasksRequest(mask_sequence=WRONG_SIZE),
        "mask_sequence.frames[2].object_masks[0].rle",
    ),
    ("EditMasks", masks_pb2.EditMasksRequest(mask_sequence=UNKNOWN_OBJECT), "mask_sequence.objects"),
    ("EditMasks", masks_pb2.EditMasksRequest(mask_sequence=NO_FPS), "mask_sequence.fps"),
    ("EditMasks", masks_pb2.EditMasksRequest(mask_sequence=_seq_msg(), edits=[T()]), "edits[0]"),
    (
        "EditMasks",
        _edit(select_objects=T.SelectObjects(object_ids=[1, 9])),
        "edits[0].select_objects.object_ids[1]",
    ),
    ("EditMasks", _edit(drop_objects=T.DropObjects(labels=["cat"])), "edits[0].drop_objects.labels[0]"),
    (
        "EditMasks",
        _edit(relabel_objects=T.RelabelObjects(labels={4: "x"})),
        "edits[0].relabel_objects.labels",
    ),
    (
        "EditMasks",
        _edit(translate=T.Translate(object_ids=[3], constant_offset=masks_pb2.Offset(dx=1))),
        "edits[0].translate.object_ids[0]",
    ),  # fmt: skip
    (
        "EditMasks",
        _edit(translate=T.Translate(offset_trajectory=_point_path(0, 6))),
        "edits[0].translate.offset_trajectory.keyframes[1].frame_index",
    ),  # fmt: skip
    (
        "EditMasks",
        _edit(translate=T.Translate(offset_trajectory=_point_path(3, 1))),
        "edits[0].translate.offset_trajectory.keyframes[1].frame_index",
    ),  # fmt: skip
    (
        "EditMasks",
        _edit(translate=T.Translate(offset_trajectory=masks_pb2.PointTrajectory())),
        "edits[0].translate.offset_trajectory.keyframes",
    ),  # fmt: skip
    ("EditMasks", _edit(translate=T.Translate()), "edits[0].translate.constant_offset"),
    ("EditMasks", _edit(scale=T.Scale(constant_factor=0)), "edits[0].scale.constant_factor"),
    ("EditMasks", _edit(rotate=T.Rotate()), "edits[0].rotate.constant_degrees"),
    ("EditMasks", _edit(trim=T.Trim(start_frame=3, end_frame=2)), "edits[0].trim.end_frame"),
    ("EditMasks", _edit(trim=T.Trim(start_frame=6)), "edits[0].trim.start_frame"),
    ("EditMasks", _edit(retime=T.Retime(speed=-1)), "edits[0].retime.speed"),
    ("EditMasks", _edit(loop=T.Loop()), "edits[0].loop.repeat_count"),
    ("EditMasks", _edit(resample_fps=T.ResampleFps()), "edits[0].resample_fps.fps"),
    ("EditMasks", _edit(dilate=T.Morphology(radius_pixels=0)), "edits[0].dilate.radius_pixels"),
    ("EditMasks", _edit(time_warp=T.TimeWarp()), "edits[0].time_warp.source_frames"),
    # size limits (the test server allows 6 frames of 32x24 x 4)
    ("EditMasks", _edit(retime=T.Retime(speed=0.1)), "edits[0].retime.speed"),
    ("EditMasks", _edit(loop=T.Loop(target_num_frames=100)), "edits[0].loop.target_num_frames"),
    ("EditMasks", _edit(resample_fps=T.ResampleFps(fps=100)), "edits[0].resample_fps.fps"),
    ("EditMasks", masks_pb2.EditMasksRequest(mask_sequence=to_proto(moving_boxes(30))), "mask_sequence"),
    # ComposeMasks
    ("ComposeMasks", masks_pb2.ComposeMasksRequest(), "layers"),
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer()]),
        "layers[0].mask_sequence",
    ),
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=WRONG_COUNT)]),
        "layers[0].mask_sequence.num_frames",
    ),  # fmt: skip
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=_seq_msg(), start_frame=-2)]),
        "layers[0].start_frame",
    ),  # fmt: skip
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=_seq_msg())], width=-1),
        "width",
    ),
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=_seq_msg())], num_frames=500),
        "num_frames",
    ),  # fmt: skip
    (
        "ComposeMasks",
        masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=_seq_msg(), start_frame=90)]),
        "layers[0].start_frame",
    ),  # fmt: skip
    # SynthesizeMasks
    ("SynthesizeMasks", _synth(width=0), "width"),
    ("SynthesizeMasks", _synth(fps=0), "fps"),
    ("SynthesizeMasks", _synth(num_frames=1000), "num_frames"),
    ("SynthesizeMasks", _synth(objects=[]), "objects"),
    ("SynthesizeMasks", _synth(object={"shape": masks_pb2.SHAPE_UNSPECIFIED}), "objects[0].shape"),
    ("SynthesizeMasks", _synth(object={"width": 0}), "objects[0].width"),
    ("SynthesizeMasks", _synth(object={"center_trajectory": None}), "objects[0].center_trajectory"),
    (
        "SynthesizeMasks",
        _synth(object={"center_trajectory": _point_path(0, 4)}),
        "objects[0].center_trajectory.keyframes[1].frame_index",
    ),  # fmt: skip
    (
        "SynthesizeMasks",
        _synth(
            object={"scale_trajectory": masks_pb2.ScalarTrajectory(keyframes=[masks_pb2.ScalarKeyframe()])}
        ),
        "objects[0].scale_trajectory.keyframes[0].value",
    ),  # fmt: skip
    ("SynthesizeMasks", _synth(object={"shape": masks_pb2.SHAPE_MASK}), "objects[0].mask_template"),
    (
        "SynthesizeMasks",
        _synth(
            object={
                "shape": masks_pb2.SHAPE_MASK,
                "mask_template": masks_pb2.MaskTemplate(mask_sequence=_seq_msg(), object_id=5),
            }
        ),
        "objects[0].mask_template.object_id",
    ),  # fmt: skip
    (
        "SynthesizeMasks",
        _synth(
            object={
                "shape": masks_pb2.SHAPE_MASK,
                "mask_template": masks_pb2.MaskTemplate(mask_sequence=_seq_msg(), object_id=2, frame_index=5),
            }
        ),
        "objects[0].mask_template.frame_index",
    ),  # fmt: skip
    # ExtractMasks
    ("ExtractMasks", masks_pb2.ExtractMasksRequest(video=media_pb2.MediaRef(inline_data=b"x")), "text_query"),
    ("ExtractMasks", masks_pb2.ExtractMasksRequest(text_query="a dog."), "video"),
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(text_query="a dog.", video=media_pb2.MediaRef(inline_data=b"")),
        "video.inline_data",
    ),
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(
            text_query="a dog.", video=media_pb2.MediaRef(inline_data=b"not a video")
        ),
        "video.inline_data",
    ),  # fmt: skip
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(text_query="a dog.", video=media_pb2.MediaRef(uri="https://x/y.mp4")),
        "video.uri",
    ),  # fmt: skip
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(
            text_query="a dog.", video=media_pb2.MediaRef(uri="file:///no/such.mp4")
        ),
        "video.uri",
    ),  # fmt: skip
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(
            text_query="a dog.", box_threshold=1.5, video=media_pb2.MediaRef(inline_data=b"x")
        ),
        "box_threshold",
    ),  # fmt: skip
    (
        "ExtractMasks",
        masks_pb2.ExtractMasksRequest(
            text_query="a dog.", redetect_every_n_frames=-1, video=media_pb2.MediaRef(inline_data=b"x")
        ),
        "redetect_every_n_frames",
    ),  # fmt: skip
    ("WatchOperation", masks_pb2.WatchOperationRequest(), "name"),
]


def test_every_bad_input_is_invalid_argument_naming_the_field(tmp_path):
    limit = 6 * 32 * 24 * 4
    big_video = encode_video(np.zeros((2, 200, 200, 3), np.uint8), fps=4, format="mp4")
    cases = [
        *INVALID,
        (
            "ExtractMasks",
            masks_pb2.ExtractMasksRequest(
                text_query="a dog.", video=media_pb2.MediaRef(inline_data=big_video)
            ),
            "video.inline_data",
        ),  # fmt: skip
    ]

    async def scenario():
        async with serve(
            make_config(tmp_path, "--max-mask-pixels", str(limit)), load_engine=ScriptedEngine
        ) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            failures = []
            for method, request, field in cases:
                try:
                    call = getattr(stub, method)(request)
                    if method == "WatchOperation":
                        [_ async for _ in call]
                    else:
                        await call
                    failures.append(f"{method} {field}: no error")
                    continue
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        failures.append(f"{method} {field}: {error.code()} {error.details()}")
                    elif bad_request_fields(error) != [field]:
                        failures.append(
                            f"{method} {field}: got {bad_request_fields(error)} ({error.details()})"
                        )
            assert not failures, "\n".join(failures)

            with pytest.raises(grpc.aio.AioRpcError) as error:
                await [
                    _
                    async for _ in stub.WatchOperation(
                        masks_pb2.WatchOperationRequest(name="operations/masks-x")
                    )
                ]
            assert error.value.code() == grpc.StatusCode.NOT_FOUND

    run_async(scenario(), timeout=SLOW)


def test_a_video_that_fails_while_decoding_fails_the_operation_with_invalid_argument(tmp_path):
    video = tiny_video(3)

    class Failing(ScriptedEngine):
        def extract(self, job, on_frame):
            raise ValueError("cannot read video: decoding failed after frame 1")

    async def scenario():
        async with serve(make_config(tmp_path), load_engine=Failing) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            op = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(
                    video=media_pb2.MediaRef(inline_data=video), text_query="a ball."
                )
            )
            final = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=op.name))][-1]
            assert final.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "decoding failed" in final.error.message
            detail = find_detail(final.error, error_details_pb2.BadRequest)
            assert detail is not None and detail.field_violations[0].field == "video"
            meta = masks_pb2.ExtractMasksMetadata()
            final.metadata.Unpack(meta)
            assert meta.state == operation_pb2.OPERATION_STATE_FAILED

    run_async(scenario(), timeout=SLOW)


# -- flags -------------------------------------------------------------------------------------------------------


def test_flag_defaults_from_the_environment_are_checked_like_the_flags(monkeypatch, capsys):
    monkeypatch.setenv("KMONO_MASKS_EXTRACT_WINDOW", "7")
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)
    assert parser.parse_args([]).extract_window == 7

    monkeypatch.setenv("KMONO_MASKS_EXTRACT_WINDOW", "-1")
    monkeypatch.setenv("KMONO_MASKS_TORCH_THREADS", "many")
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)  # building the parser does not fail on a bad value
    assert parser.parse_args(["--extract-window", "3", "--torch-threads", "2"]).extract_window == 3
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--torch-threads", "2"])
    assert exit_.value.code == 2
    assert "--extract-window: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_a_full_queue_is_resource_exhausted_with_retry_info_and_a_retry_is_not_refused(tmp_path):
    engine = ScriptedEngine(num_frames=1)  # holds the first job until released
    video = media_pb2.MediaRef(inline_data=tiny_video(2))

    async def scenario():
        async with serve(make_config(tmp_path, "--max-queued-jobs", "1"), load_engine=lambda: engine) as (
            _,
            ch,
        ):
            stub = masks_pb2_grpc.MaskServiceStub(ch)
            running = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(video=video, text_query="a ball.")
            )
            await asyncio.to_thread(engine.started.wait, 30)
            queued = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(video=video, text_query="a ball.", request_id="queued-1")
            )
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.ExtractMasks(masks_pb2.ExtractMasksRequest(video=video, text_query="a cat."))
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            retry = find_detail(status_of(error.value), error_details_pb2.RetryInfo)
            assert retry is not None and retry.retry_delay.seconds >= 1
            again = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(video=video, text_query="a ball.", request_id="queued-1")
            )
            assert again.name == queued.name  # AIP-155: the retry of a queued job is answered, not refused
            engine.release(2)
            final = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=running.name))]
            assert final[-1].HasField("response")

    run_async(scenario(), timeout=SLOW)


def test_a_job_past_its_deadline_fails_with_deadline_exceeded(tmp_path):
    engine = ScriptedEngine(num_frames=3)
    engine.release(1)  # one frame, then the job waits past its deadline

    async def scenario():
        async with serve(make_config(tmp_path, "--job-timeout", "0.5"), load_engine=lambda: engine) as (
            _,
            ch,
        ):
            stub = masks_pb2_grpc.MaskServiceStub(ch)
            op = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(
                    video=media_pb2.MediaRef(inline_data=tiny_video(2)), text_query="a ball."
                )
            )
            await asyncio.sleep(1.0)
            engine.release(2)  # the next frame's check finds the deadline passed
            final = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=op.name))][-1]
            assert final.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            assert "0.5" in final.error.message

    run_async(scenario(), timeout=SLOW)
