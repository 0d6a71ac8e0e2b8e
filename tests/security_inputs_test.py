"""Media references and decoding, as an outside attacker on loopback gRPC found them, each as the status it must
get now: a `mask_sequence_uri`, `reference_video` or ExtractMasks `video` reads no file outside the operator's
media roots (symlinks resolved first) and makes the server connect nowhere it was not told to; every mask file or
video that cannot be decoded within the limits is INVALID_ARGUMENT naming the field (never INTERNAL), decided from
headers before anything is allocated; and no error names a server path or repeats a file's contents.

The services take their `MediaPolicy` from KMONO_MEDIA_ROOTS / KMONO_MEDIA_SCHEMES here (set per test), the
default until their configs carry the flags."""

from __future__ import annotations

import io
import json
import socket
import types
import zipfile

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from generation.masks.defaults import MERGE_IOU
from generation.masks.engine import MaskEngine
from libs.media import MaskObject, MaskSequence, dumps, encode_video, read_video, to_proto
from libs.media.testing import ENCRYPTED, flip_byte, patch_zip_headers, zip_of
from libs.serving import find_detail
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from services.masks import server as masks_server
from services.video import server as video_server
from tests.fakes import FakeVideoEngine, service_config

SLOW = 180.0  # shares 2 cores with other test runs
SECRET = "root:x:0:0:SECRET-CONTENT"


# -- servers -------------------------------------------------------------------------------------------------


def serve_video(tmp_path, *extra: str):
    config = service_config(video_server, tmp_path / "data", "--tiny-engine", *extra)
    registrations, on_startup, on_shutdown = video_server.build(
        config, load_engines=lambda: {"mvideo": FakeVideoEngine()}
    )
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


class FailingExtractor:
    """The extractor's interface over the real `MaskEngine` (so the inline video goes through its temporary
    file): reading the video past its end fails the way the decoders do, naming the file they were given."""

    tracker_config = types.SimpleNamespace(iou_threshold=MERGE_IOU)

    def extract(self, path, query, **kwargs):
        read_video(path, start=1000)


def serve_masks(tmp_path, engine=None):
    config = service_config(masks_server, tmp_path / "data", "--tiny-models")
    load = (lambda: engine) if engine is not None else (lambda: MaskEngine(FailingExtractor()))
    registrations, on_startup, on_shutdown = masks_server.build(config, load_engine=load)
    return loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def violation(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(field, description) of an INVALID_ARGUMENT naming one field; fails, showing the status, otherwise."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    detail = find_detail(status_of(error), error_details_pb2.BadRequest)
    assert detail is not None and len(detail.field_violations) == 1, error.details()
    return detail.field_violations[0].field, detail.field_violations[0].description


def reason_of(error: grpc.aio.AioRpcError) -> str:
    return find_detail(status_of(error), error_details_pb2.ErrorInfo).reason


def ball() -> MaskSequence:
    id_maps = np.zeros((9, 32, 32), np.int32)
    for t in range(9):
        id_maps[t, 10:20, 2 + 2 * t : 12 + 2 * t] = 1
    return MaskSequence.from_id_maps(id_maps, [MaskObject(1, "ball")], 8)


def tiny_video(frames: int = 3) -> bytes:
    return encode_video(np.full((frames, 32, 32, 3), 90, np.uint8), fps=8, format="mp4")


@pytest.fixture
def media(tmp_path, monkeypatch):
    """media/ (the server's root) with a mask file, a video and symlinks out of it; outside/ with a secret."""
    root, outside = tmp_path / "media", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    (outside / "masks.json").write_bytes(dumps(ball(), "json"))
    (outside / "walk.mp4").write_bytes(tiny_video())
    (root / "ball.json").write_bytes(dumps(ball(), "json"))
    (root / "walk.mp4").write_bytes(tiny_video())
    (root / "link.json").symlink_to(outside / "masks.json")
    (root / "link.mp4").symlink_to(outside / "walk.mp4")
    (root / "outside").symlink_to(outside)
    monkeypatch.setenv("KMONO_MEDIA_ROOTS", str(root))
    monkeypatch.delenv("KMONO_MEDIA_SCHEMES", raising=False)
    return root, outside


def create(stub, **fields):
    return stub.CreateVideo(video_pb2.CreateVideoRequest(prompt="a ball", num_inference_steps=1, **fields))


# -- references: only under the roots, symlinks resolved, no SSRF ------------------------------------------------


def test_mask_sequence_uri_reads_files_only_under_the_media_roots(tmp_path, media):
    root, outside = media

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            op = await create(stub, mask_sequence_uri=f"file://{root}/ball.json")
            assert op.name.startswith("operations/video-")
            for uri in (
                "file:///etc/passwd",
                f"file://{outside}/passwd",
                f"file://{outside}/masks.json",  # a valid mask file, but not under a root
                f"file://{root}/link.json",  # a symlink in the root pointing out of it
                f"file://{root}/outside/masks.json",  # through a symlinked directory
                f"{root}/../outside/masks.json",
                f"file://{root}/%2E%2E/outside/passwd",
            ):
                field, message = violation(await refused(create(stub, mask_sequence_uri=uri)))
                assert (field, message) == ("mask_sequence_uri", "not under an allowed root"), uri
            # missing inside a root and missing outside say nothing more than they must
            missing = violation(await refused(create(stub, mask_sequence_uri=f"file://{root}/none.json")))
            assert missing == ("mask_sequence_uri", "not readable")
            field, message = violation(await refused(create(stub, mask_sequence_uri=f"file://{root}")))
            assert message == "not readable"

    run_async(scenario(), timeout=SLOW)


def test_a_mask_file_whose_zip_member_has_no_name_is_invalid_argument(tmp_path, media):
    """A hostile .npz under a root (the atheris run of `make reliability` found it): zipfile itself raised
    IndexError on the nameless member, which only the service's catch-all stopped: "not readable", and an ERROR
    with a traceback in its log, where the client should learn what is wrong with the file."""
    root, _ = media
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
    (root / "noname.npz").write_bytes(archive.getvalue())

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            uri = f"file://{root}/noname.npz"
            field, message = violation(await refused(create(stub, mask_sequence_uri=uri)))
            assert field == "mask_sequence_uri" and "empty name" in message, message

    run_async(scenario(), timeout=SLOW)


def test_no_root_configured_means_no_local_file(tmp_path, media, monkeypatch):
    root, _ = media
    monkeypatch.delenv("KMONO_MEDIA_ROOTS")

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            field, message = violation(
                await refused(create(stub, mask_sequence_uri=f"file://{root}/ball.json"))
            )
            assert field == "mask_sequence_uri" and "local files are not allowed" in message

    run_async(scenario(), timeout=SLOW)


def test_remote_and_wrapper_schemes_connect_nowhere(tmp_path, media):
    root, _ = media
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.5)
        port = listener.getsockname()[1]

        async def scenario():
            async with serve_video(tmp_path) as (_, channel):
                stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
                for uri in (
                    f"ftp://127.0.0.1:{port}/masks.json",
                    f"webhdfs://127.0.0.1:{port}/masks.json",
                    f"http://127.0.0.1:{port}/masks.json",
                    f"sftp://127.0.0.1:{port}/masks.json",
                    f"simplecache::ftp://127.0.0.1:{port}/masks.json",
                    f"zip://ball.json::ftp://127.0.0.1:{port}/a.zip",
                    f"local://{root}/ball.json",  # fsspec's local files: around the roots and the size check
                    "memory://kmono/masks.json",
                ):
                    field, message = violation(await refused(create(stub, mask_sequence_uri=uri)))
                    assert field == "mask_sequence_uri" and "not allowed" in message, (uri, message)
                # the reference video's uri and ExtractMasks' video too
                ref = video_pb2.ReferenceVideo(
                    video=media_pb2.MediaRef(uri=f"ftp://127.0.0.1:{port}/v.mp4"), text_query="ball."
                )
                assert (
                    violation(await refused(create(stub, reference_video=ref)))[0]
                    == "reference_video.video.uri"
                )
            async with serve_masks(tmp_path) as (_, channel):
                stub = masks_pb2_grpc.MaskServiceStub(channel)
                request = masks_pb2.ExtractMasksRequest(
                    video=media_pb2.MediaRef(uri=f"webhdfs://127.0.0.1:{port}/v.mp4"), text_query="a ball."
                )
                assert violation(await refused(stub.ExtractMasks(request)))[0] == "video.uri"

        run_async(scenario(), timeout=SLOW)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing connected


def test_a_listed_scheme_without_its_backend_is_invalid_argument(tmp_path, media, monkeypatch):
    monkeypatch.setenv("KMONO_MEDIA_SCHEMES", "gs")  # gcsfs is not installed

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            error = await refused(create(stub, mask_sequence_uri="gs://bucket/masks.json"))
            assert violation(error) == ("mask_sequence_uri", "not readable")

    run_async(scenario(), timeout=SLOW)


def test_reference_videos_and_extract_masks_videos_follow_the_roots(tmp_path, media):
    root, outside = media

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            for uri, why in [
                (f"file://{outside}/walk.mp4", "not under an allowed root"),
                (f"file://{root}/link.mp4", "not under an allowed root"),
                (f"file://{root}/none.mp4", "not readable"),
            ]:
                ref = video_pb2.ReferenceVideo(video=media_pb2.MediaRef(uri=uri), text_query="ball.")
                assert violation(await refused(create(stub, reference_video=ref))) == (
                    "reference_video.video.uri",
                    why,
                )
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            for uri, why in [
                (f"file://{outside}/walk.mp4", "not under an allowed root"),
                (f"file://{root}/outside/walk.mp4", "not under an allowed root"),
                (f"file://{root}/ball.json", "not a readable video"),
            ]:
                request = masks_pb2.ExtractMasksRequest(
                    video=media_pb2.MediaRef(uri=uri), text_query="a ball."
                )
                field, message = violation(await refused(stub.ExtractMasks(request)))
                assert field == "video.uri" and why in message and str(tmp_path) not in message
            ok = masks_pb2.ExtractMasksRequest(
                video=media_pb2.MediaRef(uri=f"file://{root}/walk.mp4"), text_query="a ball."
            )
            assert (await stub.ExtractMasks(ok)).name.startswith("operations/masks-")

    run_async(scenario(), timeout=SLOW)


# -- decoding: limits before allocation, every failure INVALID_ARGUMENT ---------------------------------------


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _bomb(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("sequence.json", "w") as member:
        for _ in range(size >> 22):
            member.write(bytes(1 << 22))
    return buffer.getvalue()


def _coco(**overrides) -> bytes:
    doc = json.loads(dumps(ball(), "json"))
    doc.update(overrides)
    return json.dumps(doc).encode()


def _rle(counts) -> bytes:
    doc = json.loads(dumps(ball(), "json"))
    doc["frames"][0]["annotations"][0]["segmentation"]["counts"] = counts
    return json.dumps(doc).encode()


TOO = "TOO_LARGE"
DENSE = dict(id_maps=np.zeros((9, 32, 32), np.int32), fps=np.array(8.0))
BAD_FILES = {
    "huge.json": (_coco(width=65536, height=65536, num_frames=1, frames=[{"annotations": []}]), TOO),
    "gigapixels.json": (_coco(width=4096, height=4096, num_frames=600, frames=[{"annotations": []}] * 600), TOO),
    "bomb.zip": (_bomb(260 << 20), TOO),
    "empty.npz": (b"", None),
    "corrupt.npz": (b"PK\x03\x04" + b"\x00" * 60, None),
    "fps2.npz": (_npz(id_maps=DENSE["id_maps"], fps=np.array([8.0, 8.0])), None),
    "crc.npz": (flip_byte(_npz(**DENSE), b"\x93NUMPY", 30), None),
    "encrypted.zip": (patch_zip_headers(flags=ENCRYPTED, data=dumps(ball(), "zip")), None),
    "bzip2.zip": (zip_of({"00000.png": b"x", "sequence.json": b"{}"}, zipfile.ZIP_BZIP2), None),
    "deep.json": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, TOO),
    "rle-bomb.json": (_rle("o" * 5000 + "0"), None),
    "rle-bigint.json": (_rle([10**40, 1]), None),
    "secret-format.json": (_coco(format=SECRET), None),
    "not-masks.pb": (SECRET.encode() * 10, None),
}  # fmt: skip


def test_every_bad_mask_file_is_invalid_argument_naming_the_uri_without_echoing_it(tmp_path, media):
    root, _ = media
    for name, (data, _) in BAD_FILES.items():
        (root / name).write_bytes(data)

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            for name, (_, too_large) in BAD_FILES.items():
                error = await refused(create(stub, mask_sequence_uri=f"file://{root}/{name}"))
                field, message = violation(error)
                assert field == "mask_sequence_uri", name
                assert "SECRET" not in error.details() + message and str(tmp_path) not in message, (
                    name,
                    message,
                )
                if too_large:
                    assert reason_of(error) == "MASK_SEQUENCE_TOO_LARGE", (name, message)

    run_async(scenario(), timeout=SLOW)


def test_a_51_byte_inline_mask_declaring_a_16384_square_frame_is_refused_before_decoding(tmp_path, media):
    msg = media_pb2.MaskSequence(width=16384, height=16384, num_frames=1, fps=8)
    msg.objects.add(id=1)
    entry = msg.frames.add(frame_index=0).object_masks.add(object_id=1)
    entry.rle.height, entry.rle.width = 16384, 16384
    entry.rle.counts.extend([0, 16384 * 16384])
    assert msg.ByteSize() <= 51

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            error = await refused(create(stub, mask_sequence=msg))
            assert violation(error)[0] == "mask_sequence" and reason_of(error) == "MASK_SEQUENCE_TOO_LARGE"
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            error = await refused(stub.EditMasks(masks_pb2.EditMasksRequest(mask_sequence=msg)))
            assert violation(error)[0] == "mask_sequence" and reason_of(error) == "MASK_SEQUENCE_TOO_LARGE"

    run_async(scenario(), timeout=SLOW)


def test_visibility_and_labels_of_inline_masks_are_checked_naming_the_field(tmp_path, media):
    bad_visibility = to_proto(ball())
    bad_visibility.frames[2].object_masks[0].visibility = 99
    long_label = to_proto(ball())
    long_label.objects[0].label = "x" * (2 << 20)

    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            error = await refused(create(stub, mask_sequence=bad_visibility))
            assert violation(error)[0] == "mask_sequence.frames[2].object_masks[0].visibility"
            error = await refused(create(stub, mask_sequence=long_label))
            assert violation(error)[0] in ("mask_sequence.objects[0].label", "mask_sequence")
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            error = await refused(stub.EditMasks(masks_pb2.EditMasksRequest(mask_sequence=bad_visibility)))
            assert violation(error)[0] == "mask_sequence.frames[2].object_masks[0].visibility"
            error = await refused(stub.EditMasks(masks_pb2.EditMasksRequest(mask_sequence=long_label)))
            assert violation(error)[0] == "mask_sequence.objects[0].label"

    run_async(scenario(), timeout=SLOW)


def _undecodable_video() -> bytes:
    """A Matroska file whose container and packets are fine (probing counts a frame) but whose H.264 is not."""
    data = bytearray(encode_video(np.full((4, 32, 32, 3), 100, np.uint8), fps=8, format="mkv"))
    for i in range(data.find(b"\x1f\x43\xb6\x75") + 64, len(data) - 8):
        data[i] = 0xFF
    return bytes(data)


def test_a_reference_video_without_decodable_frames_is_refused_at_create_time(tmp_path, media):
    root, _ = media
    (root / "broken.mkv").write_bytes(_undecodable_video())

    async def scenario():
        async with serve_video(tmp_path, "--tiny-masks") as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            for ref, field in [
                (media_pb2.MediaRef(inline_data=_undecodable_video()), "reference_video.video.inline_data"),
                (media_pb2.MediaRef(uri=f"file://{root}/broken.mkv"), "reference_video.video.uri"),
            ]:
                error = await refused(
                    create(stub, reference_video=video_pb2.ReferenceVideo(video=ref, text_query="ball."))
                )
                got, message = violation(error)
                assert got == field and "not a readable video" in message and str(tmp_path) not in message

    run_async(scenario(), timeout=SLOW)


def test_errors_found_while_extracting_never_name_the_servers_temporary_file(tmp_path, media):
    async def scenario():
        async with serve_masks(tmp_path) as (_, channel):
            stub = masks_pb2_grpc.MaskServiceStub(channel)
            op = await stub.ExtractMasks(
                masks_pb2.ExtractMasksRequest(
                    video=media_pb2.MediaRef(inline_data=tiny_video()), text_query="a ball."
                )
            )
            final = [o async for o in stub.WatchOperation(masks_pb2.WatchOperationRequest(name=op.name))][-1]
            assert final.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], final.error
            assert "past the last frame" in final.error.message
            assert "/tmp" not in final.error.message and "kmono-masks-" not in final.error.message
            detail = find_detail(final.error, error_details_pb2.BadRequest)
            assert "kmono-masks-" not in detail.field_violations[0].description

    run_async(scenario(), timeout=SLOW)


def test_negative_prompt_is_bounded_like_the_prompt(tmp_path, media):
    async def scenario():
        async with serve_video(tmp_path) as (_, channel):
            stub = video_pb2_grpc.VideoGenerationServiceStub(channel)
            error = await refused(create(stub, negative_prompt="blurry " * 400))
            field, message = violation(error)
            assert field == "negative_prompt" and "at most 2000 characters" in message
            op = await create(stub, negative_prompt="blurry " * 200)
            assert op.name.startswith("operations/video-")

    run_async(scenario(), timeout=SLOW)
