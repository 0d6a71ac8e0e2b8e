import numpy as np
import pytest
from google.rpc import error_details_pb2
from kmono.common.v1 import media_pb2

from libs.media import MaskObject, MaskSequence, encode_video, to_proto
from libs.media.policy import MediaPolicy
from libs.serving import InvalidArgumentError, find_detail
from libs.serving.errors import status_from_exception
from libs.serving.inputs import TOO_LARGE, DecodeLimits, SizeLimits, mask_sequence, media_source, probe_media


def violation(error: InvalidArgumentError) -> tuple[str, str]:
    status = status_from_exception(error)
    detail = find_detail(status, error_details_pb2.BadRequest)
    assert detail is not None and len(detail.field_violations) == 1
    return detail.field_violations[0].field, detail.field_violations[0].description


def uri(value: str) -> media_pb2.MediaRef:
    return media_pb2.MediaRef(uri=value)


@pytest.fixture
def video_tree(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (root / "walk.mp4").write_bytes(encode_video(np.zeros((3, 16, 16, 3), np.uint8), fps=8, format="mp4"))
    (root / "junk.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    (root / "escape.mp4").symlink_to(tmp_path / "secret.mp4")
    return root


def test_media_source_follows_only_what_the_policy_allows(video_tree, monkeypatch):
    monkeypatch.delenv("KMONO_MEDIA_ROOTS", raising=False)
    monkeypatch.delenv("KMONO_MEDIA_SCHEMES", raising=False)
    with pytest.raises(InvalidArgumentError) as caught:
        media_source(uri(f"file://{video_tree}/walk.mp4"), "video")  # default: the environment's, empty
    field, message = violation(caught.value)
    assert field == "video.uri" and "local files are not allowed" in message
    policy = MediaPolicy.create([video_tree])
    assert media_source(uri(f"file://{video_tree}/walk.mp4"), "video", policy) == (
        "video.uri",
        str(video_tree / "walk.mp4"),
    )
    for bad, why in [
        (f"file://{video_tree}/escape.mp4", "not under an allowed root"),
        (f"file://{video_tree.parent}/secret.mp4", "not under an allowed root"),
        (f"file://{video_tree}/missing.mp4", "not readable"),
        ("https://example.com/walk.mp4", "scheme https is not allowed"),
    ]:
        with pytest.raises(InvalidArgumentError) as caught:
            media_source(uri(bad), "video", policy)
        field, message = violation(caught.value)
        assert field == "video.uri" and why in message and str(video_tree.parent) not in message
    monkeypatch.setenv("KMONO_MEDIA_ROOTS", str(video_tree))
    assert media_source(uri(f"file://{video_tree}/walk.mp4"), "video")[0] == "video.uri"


def test_probe_media_decodes_a_frame_and_never_names_a_server_path(video_tree):
    policy = MediaPolicy.create([video_tree])
    field, source, info = probe_media(uri(f"file://{video_tree}/walk.mp4"), "video", policy)
    assert (field, info.num_frames, info.width) == ("video.uri", 3, 16)
    with pytest.raises(InvalidArgumentError) as caught:
        probe_media(uri(f"file://{video_tree}/junk.mp4"), "video", policy)
    field, message = violation(caught.value)
    assert field == "video.uri" and "not a readable video" in message and str(video_tree) not in message
    with pytest.raises(InvalidArgumentError) as caught:
        probe_media(uri(f"file://{video_tree}/walk.mp4"), "video", policy, DecodeLimits(max_frame_pixels=100))
    assert violation(caught.value)[0] == "video.uri"
    assert caught.value.reason == TOO_LARGE


def test_mask_sequence_checks_per_frame_limits_before_decoding():
    msg = media_pb2.MaskSequence(width=16384, height=16384, num_frames=1, fps=8)
    msg.objects.add(id=1)
    entry = msg.frames.add(frame_index=0).object_masks.add(object_id=1)
    entry.rle.height, entry.rle.width = 16384, 16384
    entry.rle.counts.extend([0, 16384 * 16384])
    with pytest.raises(InvalidArgumentError) as caught:
        mask_sequence(msg, "mask_sequence", SizeLimits(max_pixels=1 << 28))  # 16384^2 is exactly 1 << 28
    field, message = violation(caught.value)
    assert field == "mask_sequence" and "per frame" in message and caught.value.reason == TOO_LARGE

    seq = MaskSequence.from_id_maps(np.ones((2, 4, 4), np.int32), [MaskObject(1, "x" * 300)], 8)
    with pytest.raises(InvalidArgumentError) as caught:
        mask_sequence(to_proto(seq), "layers[0].mask_sequence", SizeLimits(max_pixels=1000))
    assert violation(caught.value)[0] == "layers[0].mask_sequence.objects[0].label"


def test_size_limits_tighten_the_decode_limits():
    decode = SizeLimits(max_pixels=1000, max_objects=3).decode_limits(DecodeLimits(max_frames=7))
    assert (decode.max_pixels, decode.max_objects, decode.max_frames) == (1000, 3, 7)


def test_float_tensor_views_float32_bytes_and_converts_other_widths():
    from kmono.common.v1 import tensor_pb2

    from libs.serving.inputs import float_tensor, to_float_tensor

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    view = float_tensor(to_float_tensor(values), "x")
    np.testing.assert_array_equal(view, values)
    assert view.dtype == np.float32 and not view.flags.writeable  # no copy of the request's bytes
    half = tensor_pb2.Tensor(
        dtype=tensor_pb2.DATA_TYPE_FLOAT16, dims=[2, 3], data=values.astype("<f2").tobytes()
    )
    converted = float_tensor(half, "x")
    np.testing.assert_array_equal(converted, values)
    assert converted.dtype == np.float32 and converted.flags.writeable
    with pytest.raises(InvalidArgumentError):
        float_tensor(tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, dims=[2, 3], data=b"\0" * 20), "x")


@pytest.mark.parametrize(
    ("dtype", "named"), [(5, "DATA_TYPE_INT8"), (11, "the unknown value 11"), (-4, "-4")]
)
def test_float_tensor_names_a_wrong_dtype_even_one_this_build_does_not_know(dtype, named):
    """proto3 enums are open: a client built from a newer contract can send a DataType number we have no name for,
    and that must be INVALID_ARGUMENT on the field, not a ValueError from `DataType.Name` (an INTERNAL error)."""
    from kmono.common.v1 import tensor_pb2

    from libs.serving.inputs import float_tensor

    with pytest.raises(InvalidArgumentError) as error:
        float_tensor(tensor_pb2.Tensor(dtype=dtype, dims=[1], data=b"\0" * 4), "candidates[0].embeddings")
    assert "candidates[0].embeddings.dtype" in str(error.value) and named in str(error.value)
