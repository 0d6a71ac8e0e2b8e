"""What an outside attacker on loopback gRPC found against the video and masks services, each as the status it
must get now: absurd edit parameters cost no more than sensible ones (or are INVALID_ARGUMENT naming the field),
overflowing numbers and malformed bytes are INVALID_ARGUMENT (not INTERNAL or UNKNOWN), errors echo at most a
bounded part of what a client sent, artifact names cannot climb out of the artifact store, every string and list
of a masks request is bounded, and a size the loaded video engine cannot render is refused when the job is
created, not failed as INTERNAL when it runs."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from generation.masks import edit
from generation.masks.testing import moving_boxes
from libs.media import MaskSequence, dumps, from_proto, to_proto
from libs.serving import find_detail
from libs.serving.errors import ELLIPSIS, MAX_ECHO_CHARS
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from services.masks import server as masks_server
from services.video import server as video_server
from services.video.artifacts import ArtifactStore, parse_artifact_name
from tests.fakes import FakeVideoEngine, service_config

SLOW = 180.0  # shares 2 cores with other test runs

# -- servers -------------------------------------------------------------------------------------------------


class NoExtractor:
    """The masks worker's engine where no extraction may run: these requests must all be refused."""

    def extract(self, job, on_frame):
        raise AssertionError("a request that should have been refused reached the extractor")


def serve_masks(tmp_path, *extra: str):
    config = service_config(masks_server, tmp_path, "--tiny-models", *extra)
    registrations, on_startup, on_shutdown = masks_server.build(config, load_engine=NoExtractor)
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


def serve_video(tmp_path, engine=None):
    config = service_config(video_server, tmp_path, "--tiny-engine")
    engine = engine or FakeVideoEngine()
    registrations, on_startup, on_shutdown = video_server.build(
        config, load_engines=lambda: {"mvideo": engine}
    )
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


# -- what a refusal must look like ----------------------------------------------------------------------------


async def refused(call) -> grpc.aio.AioRpcError:
    """The error `call` (a unary call or a response stream) ends with; fails if it succeeds."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            [_ async for _ in call]
        else:
            await call
    return caught.value


def fields_of(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT names (fails, showing the status, for any other code)."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    detail = find_detail(status_of(error), error_details_pb2.BadRequest)
    assert detail is not None, error.details()
    return [violation.field for violation in detail.field_violations]


def reason_of(error: grpc.aio.AioRpcError) -> str:
    return find_detail(status_of(error), error_details_pb2.ErrorInfo).reason


def _seq() -> MaskSequence:
    return moving_boxes()


def _edit_request(*edits: masks_pb2.MaskEdit, seq: MaskSequence | None = None) -> masks_pb2.EditMasksRequest:
    return masks_pb2.EditMasksRequest(mask_sequence=to_proto(seq or _seq()), edits=list(edits))


E = masks_pb2.MaskEdit


# -- 1. absurd edit parameters --------------------------------------------------------------------------------


def test_dilate_and_erode_by_an_absurd_radius_cost_what_the_frame_diagonal_costs(tmp_path):
    """Six requests at radius 10^7 tied up every RPC thread (the work grew with the radius). The radius is now
    clamped to the frame's diagonal (`edit.max_radius`), which has exactly the same effect."""
    seq = _seq()
    largest = edit.max_radius(seq.width, seq.height)
    absurd = 10**7

    async def scenario():
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            calls = [
                stub.EditMasks(_edit_request(E(dilate=E.Morphology(radius_pixels=absurd, object_ids=[2]))))
                for _ in range(3)
            ] + [stub.EditMasks(_edit_request(E(erode=E.Morphology(radius_pixels=absurd)))) for _ in range(3)]
            replies = await asyncio.gather(*calls)
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            return [from_proto(reply.mask_sequence) for reply in replies], health.status

    results, health = run_async(scenario(), timeout=SLOW)
    assert health == health_pb2.HealthCheckResponse.SERVING
    grown = edit.dilate(seq, largest, object_ids=[2])
    assert results[:3] == [grown] * 3 and results[3:] == [edit.erode(seq, largest)] * 3
    assert (grown.id_map(0) != 0).all()  # the ball grew over all the background


def test_edits_whose_result_would_be_huge_or_whose_rates_are_absurd_are_invalid_argument(tmp_path):
    """Scale factors, loop counts, time warps, retiming and resampling to huge or tiny rates: each either has
    a cost bounded by the frame, or is refused before any work, naming the field."""
    keyframes = masks_pb2.ScalarTrajectory(keyframes=[masks_pb2.ScalarKeyframe(frame_index=0, value=1)])
    cases = [
        # (edit, field named, reason or None)
        (E(resample_fps=E.ResampleFps(fps=1e-7)), "edits[0].resample_fps.fps", None),  # was INTERNAL
        (E(resample_fps=E.ResampleFps(fps=1e-30)), "edits[0].resample_fps.fps", None),
        (E(resample_fps=E.ResampleFps(fps=1e30)), "edits[0].resample_fps.fps", "MASK_SEQUENCE_TOO_LARGE"),
        (E(resample_fps=E.ResampleFps(fps=float("inf"))), "edits[0].resample_fps.fps", None),
        (E(retime=E.Retime(speed=1e-9)), "edits[0].retime.speed", None),
        (E(loop=E.Loop(repeat_count=2**31 - 1)), "edits[0].loop.repeat_count", "MASK_SEQUENCE_TOO_LARGE"),
        (
            E(loop=E.Loop(target_num_frames=2**31 - 1)),
            "edits[0].loop.target_num_frames",
            "MASK_SEQUENCE_TOO_LARGE",
        ),
        (
            E(time_warp=E.TimeWarp(source_frames=keyframes, num_frames=2**31 - 1)),
            "edits[0].time_warp.num_frames",
            "MASK_SEQUENCE_TOO_LARGE",
        ),
    ]
    seq = _seq()
    tiny_rate = to_proto(seq)
    tiny_rate.fps = 1e-9

    async def scenario():
        async with serve_masks(tmp_path, "--max-mask-pixels", str(1 << 20)) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            failures = []
            for msg, field, reason in cases:
                error = await refused(stub.EditMasks(_edit_request(msg)))
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or fields_of(error) != [field]:
                    failures.append(f"{msg}: {error.code()} {error.details()}")
                elif reason and reason_of(error) != reason:
                    failures.append(f"{msg}: reason {reason_of(error)}")
            # a huge or tiny scale factor costs no more than the frame: it answers
            for factor in (1e30, 1e-30):
                reply = await stub.EditMasks(_edit_request(E(scale=E.Scale(constant_factor=factor))))
                assert from_proto(reply.mask_sequence).num_frames == seq.num_frames
            layer = masks_pb2.MaskLayer(mask_sequence=to_proto(seq))
            compose_cases = [
                (masks_pb2.ComposeMasksRequest(layers=[layer], fps=1e-7), "fps"),  # was INTERNAL
                (masks_pb2.ComposeMasksRequest(layers=[masks_pb2.MaskLayer(mask_sequence=tiny_rate)]),
                 "layers[0].mask_sequence.fps"),  # was INTERNAL: 0/0 frame rates
                (masks_pb2.ComposeMasksRequest(layers=[layer, masks_pb2.MaskLayer(mask_sequence=tiny_rate)], fps=8),
                 "layers[1].start_frame"),  # a 1e-9 fps layer at 8 fps: ~10^10 frames, over the limit
            ]  # fmt: skip
            for request, field in compose_cases:
                error = await refused(stub.ComposeMasks(request))
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or fields_of(error) != [field]:
                    failures.append(f"ComposeMasks {field}: {error.code()} {error.details()}")
            assert not failures, "\n".join(failures)

    run_async(scenario(), timeout=SLOW)


# -- 2. overflowing numbers in the Operations API ---------------------------------------------------------------


def test_a_huge_wait_timeout_and_a_forged_page_token_are_invalid_argument(tmp_path):
    async def scenario():
        async with serve_masks(tmp_path) as (_, channel):
            operations = operations_pb2_grpc.OperationsStub(channel)
            for timeout in (duration_pb2.Duration(seconds=2**62), duration_pb2.Duration(seconds=-(2**62))):
                error = await refused(
                    operations.WaitOperation(
                        operations_pb2.WaitOperationRequest(name="operations/masks-x", timeout=timeout)
                    )
                )
                assert fields_of(error) == ["timeout"]
            token = base64.urlsafe_b64encode(
                json.dumps({"v": 1, "c": 2**70, "n": "operations/x", "s": "0" * 16}).encode()
            ).decode()
            error = await refused(
                operations.ListOperations(operations_pb2.ListOperationsRequest(page_token=token))
            )
            assert fields_of(error) == ["page_token"]

    run_async(scenario(), timeout=SLOW)


# -- 3. malformed protobuf bytes ----------------------------------------------------------------------------------


def test_malformed_request_bytes_are_invalid_argument_on_every_service(tmp_path):
    garbage = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # field 1, a length past the end

    async def calls(channel, methods):
        errors = {}
        for method, streaming in methods:
            if streaming:
                call = channel.unary_stream(method, request_serializer=None)(garbage)
            else:
                call = channel.unary_unary(method, request_serializer=None)(garbage)
            errors[method] = await refused(call)
        return errors

    async def scenario():
        errors = {}
        async with serve_masks(tmp_path / "masks") as (_, channel):
            errors |= await calls(
                channel,
                [
                    ("/kmono.masks.v1.MaskService/EditMasks", False),
                    ("/kmono.masks.v1.MaskService/ExtractMasks", False),
                    ("/kmono.masks.v1.MaskService/WatchOperation", True),
                    ("/google.longrunning.Operations/GetOperation", False),
                ],
            )
        async with serve_video(tmp_path / "video") as (_, channel):
            errors |= await calls(
                channel,
                [
                    ("/kmono.video.v1.VideoGenerationService/CreateVideo", False),
                    ("/kmono.video.v1.VideoGenerationService/DownloadArtifact", True),
                ],
            )
        return errors

    errors = run_async(scenario(), timeout=SLOW)
    for method, error in errors.items():
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error.code(), error.details())
        assert reason_of(error) == "MALFORMED_REQUEST" and "not a valid serialized" in error.details()


# -- 4. what errors echo ------------------------------------------------------------------------------------------


def test_errors_echo_at_most_128_characters_of_a_name(tmp_path):
    """An 8,000-character name in NOT_FOUND overflowed the client's metadata limit (the client saw no status)."""
    name = "operations/masks-" + "x" * 8000

    async def scenario():
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            return [
                await refused(stub.WatchOperation(masks_pb2.WatchOperationRequest(name=name))),
                await refused(operations.GetOperation(operations_pb2.GetOperationRequest(name=name))),
            ]

    for error in run_async(scenario(), timeout=SLOW):
        assert error.code() == grpc.StatusCode.NOT_FOUND, (error.code(), error.details())
        assert name[:60] in error.details() and ELLIPSIS in error.details()
        assert len(error.details()) < 300
        resource = find_detail(status_of(error), error_details_pb2.ResourceInfo)
        assert resource.resource_name == name[:MAX_ECHO_CHARS] + ELLIPSIS


# -- 5. artifact names that climb out of the store ----------------------------------------------------------------


def test_dot_dot_in_an_artifact_name_cannot_reach_outside_the_artifact_store(tmp_path):
    """`operations/../artifacts/x` is `<artifacts>/../x`: it read the service's data directory (its operation
    database). Now `.` and `..` are not ids, and no path outside the store's root is opened."""
    planted = dumps(_seq(), "pb")
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "planted.pb").write_bytes(
        planted
    )  # beside the artifact root, like operations.sqlite
    climbing = [
        "operations/../artifacts/planted.pb",
        "operations/../artifacts/operations.sqlite",
        "operations/./artifacts/x",
        "operations/video-1/artifacts/..",
    ]

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            results = []
            for uri in climbing:
                request = video_pb2.CreateVideoRequest(
                    prompt="a dog", mask_sequence_uri=uri, num_inference_steps=1
                )
                results.append(("mask_sequence_uri", await refused(stub.CreateVideo(request))))
                download = video_pb2.DownloadArtifactRequest(artifact_name=uri)
                results.append(("artifact_name", await refused(stub.DownloadArtifact(download))))
            download = video_pb2.DownloadArtifactRequest(operation_name="operations/..")
            results.append(("operation_name", await refused(stub.DownloadArtifact(download))))
            return results

    for field, error in run_async(scenario(), timeout=SLOW):
        assert fields_of(error) == [field], error.details()

    for name in climbing:
        assert parse_artifact_name(name) is None
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(ValueError):
        store.read("operations/../artifacts/planted.pb")
    with pytest.raises(ValueError):
        store.delete_operation("operations/..")
    with pytest.raises(ValueError):
        store.put("operations/..", "x", video_pb2.ARTIFACT_KIND_VIDEO, "video/mp4", b"x")
    assert not (tmp_path / "x").exists()
    artifact = store.put("operations/video-1", "video.mp4", video_pb2.ARTIFACT_KIND_VIDEO, "video/mp4", b"ok")
    assert store.read(artifact.name) == b"ok"


# -- 6. unbounded strings and lists in masks requests ----------------------------------------------------------


def test_every_string_and_list_of_a_masks_request_is_bounded(tmp_path):
    long_label = "dog" * 1000
    many_labels = [f"l{i}" for i in range(300)]
    point = masks_pb2.PointTrajectory(keyframes=[masks_pb2.PointKeyframe(frame_index=0, x=1, y=1)])
    many_keyframes = masks_pb2.PointTrajectory(
        keyframes=[masks_pb2.PointKeyframe(frame_index=i, x=1, y=1) for i in range(10_001)]
    )

    def synth(**fields) -> masks_pb2.SynthesizeMasksRequest:
        obj = {"shape": masks_pb2.SHAPE_CIRCLE, "width": 4, "center_trajectory": point, **fields}
        return masks_pb2.SynthesizeMasksRequest(
            width=16, height=16, num_frames=4, fps=8, objects=[masks_pb2.SyntheticObject(**obj)]
        )

    video = media_pb2.MediaRef(inline_data=b"not read: the query is refused first")
    cases = [
        ("ExtractMasks", masks_pb2.ExtractMasksRequest(text_query="a dog. " * 150_000, video=video), "text_query"),
        ("ExtractMasks", masks_pb2.ExtractMasksRequest(
            text_query="a dog.", video=media_pb2.MediaRef(uri="file:///" + "a" * 5000)), "video.uri"),
        ("EditMasks", _edit_request(*[E(reverse=E.Reverse())] * 65), "edits"),
        ("EditMasks", _edit_request(E(select_objects=E.SelectObjects(labels=many_labels))),
         "edits[0].select_objects.labels"),
        ("EditMasks", _edit_request(E(drop_objects=E.DropObjects(labels=["dog", long_label]))),
         "edits[0].drop_objects.labels[1]"),
        ("EditMasks", _edit_request(E(select_objects=E.SelectObjects(object_ids=[1] * 10_000))),
         "edits[0].select_objects.object_ids"),
        ("EditMasks", _edit_request(E(translate=E.Translate(object_ids=[1] * 10_000, constant_offset={}))),
         "edits[0].translate.object_ids"),
        ("EditMasks", _edit_request(E(dilate=E.Morphology(object_ids=[2] * 10_000, radius_pixels=1))),
         "edits[0].dilate.object_ids"),
        ("EditMasks", _edit_request(E(relabel_objects=E.RelabelObjects(labels={1: "ok", 2: long_label}))),
         "edits[0].relabel_objects.labels[2]"),
        ("EditMasks", _edit_request(E(relabel_objects=E.RelabelObjects(labels={i: "x" for i in range(300)}))),
         "edits[0].relabel_objects.labels"),
        ("EditMasks", _edit_request(E(translate=E.Translate(offset_trajectory=many_keyframes))),
         "edits[0].translate.offset_trajectory.keyframes"),
        ("SynthesizeMasks", synth(label=long_label), "objects[0].label"),
        ("SynthesizeMasks", synth(center_trajectory=many_keyframes), "objects[0].center_trajectory.keyframes"),
    ]  # fmt: skip

    async def scenario():
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            failures = []
            for method, request, field in cases:
                error = await refused(getattr(stub, method)(request))
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or fields_of(error) != [field]:
                    failures.append(f"{method} {field}: {error.code()} {error.details()[:300]}")
                elif len(error.details()) > 600:
                    failures.append(f"{method} {field}: {len(error.details())} characters of message")
            # at the bounds, the same fields are taken
            reply = await stub.EditMasks(
                _edit_request(
                    E(relabel_objects=E.RelabelObjects(labels={1: "d" * 256})),
                    *[E(reverse=E.Reverse())] * 63,
                )
            )
            assert from_proto(reply.mask_sequence).objects[0].label == "d" * 256
            assert not failures, "\n".join(failures)

    run_async(scenario(), timeout=SLOW)


# -- 7. sizes the loaded video engine cannot render --------------------------------------------------------------


@pytest.fixture(scope="module")
def patched_engine(tmp_path_factory):
    """A CogVideoX-1.5-style MVideo (temporal patches, rotary embeddings sliced from its 32 x 32 training grid): the
    shapes default was one until it became frame-exact, and published 1.5 models are."""
    import dataclasses

    from generation.mvideo.engine import load_mvideo_engine
    from generation.mvideo.shapes.model import build_shapes_pipeline
    from generation.mvideo.training.config import SHAPES_TINY_SPEC

    spec = dataclasses.replace(SHAPES_TINY_SPEC, height=32, width=32, num_frames=8, patch_size_t=2)
    path = tmp_path_factory.mktemp("patched")
    build_shapes_pipeline(spec).save_pretrained(path)
    return load_mvideo_engine(path=path, torch_threads=1)


def test_sizes_a_patched_model_cannot_render_are_refused_naming_the_field(tmp_path, patched_engine):
    """The shapes default (then CogVideoX-1.5 style) took 48 x 48 (a multiple of its size_multiple, 4) and then
    failed the job as INTERNAL."""
    assert (patched_engine.spec.max_height, patched_engine.spec.max_width) == (32, 32)
    masks = moving_boxes(num_frames=8, width=48, height=48)

    async def scenario():
        async with serve_video(tmp_path, patched_engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            sized = await refused(
                stub.CreateVideo(video_pb2.CreateVideoRequest(prompt="a red circle", width=48, height=48))
            )
            wide = await refused(
                stub.CreateVideo(video_pb2.CreateVideoRequest(prompt="a red circle", width=64))
            )
            from_masks = await refused(
                stub.CreateVideo(
                    video_pb2.CreateVideoRequest(prompt="a red circle", mask_sequence=to_proto(masks))
                )
            )
            # smaller than the training grid renders (a slice of it)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(
                    prompt="a red circle", width=24, height=16, num_inference_steps=1
                )
            )
            final = [o async for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name))][-1]
            return sized, wide, from_masks, final

    sized, wide, from_masks, final = run_async(scenario(), timeout=SLOW)
    assert fields_of(sized) == ["width"] and "at most 32" in sized.details()  # the first size at fault
    assert fields_of(wide) == ["width"]
    assert fields_of(from_masks) == ["mask_sequence"]
    assert final.done and final.HasField("response"), final.error


def test_the_frame_exact_shapes_default_renders_sizes_past_its_training_grid(tmp_path):
    """One frame per token and rotary embeddings made for any grid (CogVideoX 1.0 style): 48 x 48 renders."""
    from generation.mvideo.engine import load_mvideo_engine
    from generation.mvideo.shapes.model import DEFAULT_DIR

    engine = load_mvideo_engine(path=DEFAULT_DIR, torch_threads=1)
    assert (engine.spec.max_height, engine.spec.max_width) == (None, None)

    async def scenario():
        async with serve_video(tmp_path, engine) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(
                    prompt="a red circle", width=48, height=48, num_inference_steps=1
                )
            )
            return [o async for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name))][-1]

    from services.video.client import response_of

    final = run_async(scenario(), timeout=SLOW)
    assert final.done and final.HasField("response"), final.error
    response = response_of(final)
    assert (response.width, response.height) == (48, 48)


def test_frame_rates_the_video_cannot_be_encoded_at_are_refused_naming_the_field(tmp_path):
    """fps 1e-7 (a rate of 0 over 1001) and 1e30 (past a C long) were taken, then failed the job as INTERNAL."""
    slow = moving_boxes(num_frames=9, width=32, height=32, fps=1e-4)

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            errors = [
                await refused(stub.CreateVideo(video_pb2.CreateVideoRequest(prompt="a dog", fps=fps)))
                for fps in (1e-7, 1e30, 3.4e38)
            ]
            errors.append(
                await refused(
                    stub.CreateVideo(
                        video_pb2.CreateVideoRequest(prompt="a dog", mask_sequence=to_proto(slow))
                    )
                )
            )
            op = await stub.CreateVideo(
                video_pb2.CreateVideoRequest(prompt="a dog", fps=0.5, num_inference_steps=1)
            )
            final = [o async for o in stub.WatchOperation(video_pb2.WatchOperationRequest(name=op.name))][-1]
            return errors, final

    errors, final = run_async(scenario(), timeout=SLOW)
    assert [fields_of(error) for error in errors[:3]] == [["fps"]] * 3
    # the masks' own rate: `plan` (generation/mvideo/jobs.py) names fps, not the mask field, for now
    assert fields_of(errors[3]) in (["fps"], ["mask_sequence"])
    assert final.done and final.HasField("response"), final.error
