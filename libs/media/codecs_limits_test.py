"""The decoding guard: every mask sequence from outside is checked against `DecodeLimits` before anything is
allocated, and every malformed input is a ValueError (a FieldError for limits), never another exception."""

import io
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from kmono.common.v1 import media_pb2
from PIL import Image

from libs.errors import FieldError
from libs.media import MaskObject, MaskSequence, dumps, from_proto, load, loads, to_proto
from libs.media.limits import TOO_LARGE, DecodeLimits
from libs.media.testing import ENCRYPTED, flip_byte, patch_zip_headers, zip_of

MiB = 1 << 20


def small_sequence() -> MaskSequence:
    id_maps = np.zeros((2, 4, 4), np.int32)
    id_maps[:, 1:3, 1:3] = 1
    return MaskSequence.from_id_maps(id_maps, [MaskObject(1, "ball")], 8)


class peak_memory:
    """Peak bytes Python and numpy allocate inside the block (numpy reports its buffers to tracemalloc)."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_a_51_byte_proto_declaring_one_16384x16384_frame_is_refused_before_decoding():
    msg = media_pb2.MaskSequence(width=16384, height=16384, num_frames=1, fps=8)
    msg.objects.add(id=1)
    mask = msg.frames.add(frame_index=0).object_masks.add(object_id=1)
    mask.rle.height, mask.rle.width = 16384, 16384
    mask.rle.counts.extend([0, 16384 * 16384])  # one run: the whole 3 GB frame
    data = msg.SerializeToString()
    assert len(data) <= 51
    with peak_memory() as memory, pytest.raises(FieldError, match="per frame") as caught:
        loads(data, "pb")
    assert caught.value.code == TOO_LARGE and caught.value.field == ""
    assert memory.peak < 4 * MiB
    with pytest.raises(FieldError, match="per frame"):
        from_proto(msg)
    # the limits are the caller's: a tighter total is checked the same way
    with pytest.raises(FieldError, match="frames x width x height"):
        from_proto(to_proto(small_sequence()), limits=DecodeLimits(max_pixels=16))


def test_a_330_byte_coco_json_asking_for_gigabytes_is_refused_before_decoding():
    doc = {
        "format": "kmono.mask_sequence", "version": 1, "width": 4096, "height": 4096, "num_frames": 150,
        "fps": 8, "objects": [{"id": 1}],
        "frames": [{"annotations": [{"object_id": 1, "segmentation": {"size": [4096, 4096], "counts": "0"}}]}]
        * 150,
    }  # fmt: skip
    small = json.dumps({**doc, "frames": doc["frames"][:1], "num_frames": 1, "width": 65536, "height": 65536})
    assert len(small) < 330
    for data, message in [
        (small.encode(), "per frame"),
        (json.dumps(doc).encode(), "frames x width x height"),
    ]:
        with peak_memory() as memory, pytest.raises(FieldError, match=message) as caught:
            loads(data)
        assert caught.value.code == TOO_LARGE and memory.peak < 8 * MiB
    video = {
        "videos": [{"id": 1, "width": 65536, "height": 65536, "length": 600, "fps": 6}],
        "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [None] * 600}],
    }
    with pytest.raises(FieldError, match="per frame"):
        loads(json.dumps(video).encode())


def test_mask_files_by_path_are_checked_like_bytes(tmp_path):
    doc = {"format": "kmono.mask_sequence", "version": 1, "width": 65536, "height": 65536, "num_frames": 1,
           "fps": 8, "objects": [], "frames": [{"annotations": []}]}  # fmt: skip
    (tmp_path / "big.json").write_text(json.dumps(doc))
    with pytest.raises(FieldError, match="per frame"):
        load(tmp_path / "big.json")
    (tmp_path / "small.pb").write_bytes(dumps(small_sequence(), "pb"))
    with pytest.raises(FieldError, match="bytes, over this reader's limit of 10"):
        load(tmp_path / "small.pb", limits=DecodeLimits(max_bytes=10))


def _stream_zip(name: str, size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as member:
        chunk = bytes(4 * MiB)
        for _ in range(size // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_from_its_declared_sizes():
    bomb = _stream_zip("sequence.json", 260 * MiB)  # over the default 256 MiB of inflated members
    assert len(bomb) < 1 * MiB
    with peak_memory() as memory, pytest.raises(FieldError, match="inflates to") as caught:
        loads(bomb)
    assert caught.value.code == TOO_LARGE and memory.peak < 16 * MiB
    with pytest.raises(FieldError, match="inflates to"):
        loads(_stream_zip("id_maps.npy", 8 * MiB), "npz", limits=DecodeLimits(max_decompressed_bytes=MiB))


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _rle_doc(counts) -> bytes:
    return json.dumps({
        "format": "kmono.mask_sequence", "version": 1, "width": 4, "height": 4, "num_frames": 1, "fps": 8,
        "objects": [{"id": 1}],
        "frames": [{"annotations": [{"object_id": 1, "segmentation": {"size": [4, 4], "counts": counts}}]}],
    }).encode()  # fmt: skip


DENSE = dict(id_maps=np.zeros((1, 4, 4), np.int32), fps=np.array(8.0))
UNREADABLE = {
    "empty npz": (b"", "npz", "not a readable zip"),
    "corrupt npz": (b"PK\x03\x04" + b"\x00" * 40, "npz", "not a readable zip"),
    "npz with a 2-element fps": (_npz(id_maps=DENSE["id_maps"], fps=np.array([8.0, 8.0])), "npz", "one number"),
    "npz with an object array": (b"", "npz", None),  # replaced below: needs allow_pickle to write
    "npz with a bad CRC": (flip_byte(_npz(**DENSE), b"\x93NUMPY", 20), "npz", "bad CRC"),
    "npz truncated": (_npz(**DENSE)[:100], "npz", "not a readable zip"),
    "encrypted zip": (patch_zip_headers(flags=ENCRYPTED, data=dumps(small_sequence(), "zip")), "zip", "encrypted"),
    "zip with unknown compression": (zip_of({"00000.png": b"x"}, zipfile.ZIP_BZIP2), "zip", "compression method"),
    "zip with a corrupt member": (flip_byte(zip_of({"sequence.json": b"{}" * 500}), b"sequence.json", 20), "zip",
                                  "cannot be read"),
    "deeply nested JSON": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "json", "nested"),
    "RLE bomb: a 200-character value": (_rle_doc("o" * 200 + "0"), "json", "longer than 8 characters"),
    "RLE bomb: a huge run": (_rle_doc([10**30, 1]), "json", "non-negative integers"),
    "RLE bomb: runs past the frame": (_rle_doc([2**62, 2**62, 2**62, 2**62 + 16]), "json", "longer than"),
    "RLE as floats": (_rle_doc([1.5, 14.5]), "json", "non-negative integers"),
    "polygon with NaN": (b"", "json", None),
    "pb garbage": (b"\xff\xff\xff\xff", "pb", "not a serialized"),
    "sniffed empty zip": (b"PK\x05\x06" + b"\x00" * 18, None, "no PNG frames"),
    "sniffed garbage zip": (b"PK\x03\x04" + b"\x00" * 18, None, "not a readable zip"),
}  # fmt: skip
_buffer = io.BytesIO()
np.savez(_buffer, id_maps=DENSE["id_maps"], fps=np.array([{"x": 1}], dtype=object))
UNREADABLE["npz with an object array"] = (_buffer.getvalue(), "npz", "object arrays")
_polygon = json.loads(_rle_doc("0"))
_polygon["frames"][0]["annotations"][0]["segmentation"] = [[0, 0, 3, 0, 3, float("nan")]]
UNREADABLE["polygon with NaN"] = (json.dumps(_polygon).encode(), "json", "finite")


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_every_unreadable_mask_file_is_a_value_error(case):
    data, fmt, message = UNREADABLE[case]
    with pytest.raises(ValueError, match=message):
        loads(data, fmt)


def test_visibility_outside_the_enum_is_rejected_naming_the_field():
    msg = to_proto(small_sequence())
    msg.frames[1].object_masks[0].visibility = 99
    with pytest.raises(FieldError, match="unknown visibility 99") as caught:
        from_proto(msg)
    assert caught.value.field == "frames[1].object_masks[0].visibility"


def test_labels_are_bounded_naming_the_field():
    msg = to_proto(small_sequence())
    msg.objects[0].label = "x" * (1 << 20)
    with pytest.raises(FieldError, match="at most 256 characters") as caught:
        from_proto(msg)
    assert caught.value.field == "objects[0].label" and caught.value.code == TOO_LARGE
    doc = json.loads(dumps(small_sequence(), "json"))
    doc["objects"][0]["label"] = "y" * 300
    with pytest.raises(FieldError, match="at most 256 characters"):
        loads(json.dumps(doc).encode())
    np_labels = _npz(**DENSE, object_ids=np.array([1]), object_labels=np.array(["z" * 300]))
    with pytest.raises(FieldError, match="at most 256 characters"):
        loads(np_labels, "npz")
    assert (
        from_proto(to_proto(small_sequence()), limits=DecodeLimits(max_label_chars=4)).objects[0].label
        == "ball"
    )


def test_decoded_mask_pixels_are_budgeted_across_masks():
    msg = media_pb2.MaskSequence(width=4, height=4, num_frames=1, fps=8)
    frame = msg.frames.add(frame_index=0)
    for oid in range(1, 8):
        msg.objects.add(id=oid)
        entry = frame.object_masks.add(object_id=oid)
        entry.rle.height, entry.rle.width = 4, 4
        entry.rle.counts.append(16)  # empty: each still decodes a full frame
    with pytest.raises(FieldError, match="mask pixels") as caught:
        from_proto(msg, limits=DecodeLimits(max_decoded_pixels=100))
    assert caught.value.code == TOO_LARGE
    assert from_proto(msg, limits=DecodeLimits(max_decoded_pixels=112)).num_frames == 1
    with pytest.raises(FieldError, match="over this reader's limit of 6"):
        from_proto(msg, limits=DecodeLimits(max_objects=6))


def test_error_messages_never_repeat_strings_from_the_input():
    secret = "root:x:0:0:SECRET"
    doc = json.loads(dumps(small_sequence(), "json"))
    for edit in (
        lambda d: d.update(format=secret),
        lambda d: d.update(version=secret),
        lambda d: d["frames"][0].update(frame_index=secret),
        lambda d: d["frames"][0]["annotations"][0].update(object_id=secret),
        lambda d: d["frames"][0]["annotations"][0].update(visibility=secret),
        lambda d: d["frames"][0]["annotations"][0]["segmentation"].update(size=secret),
        lambda d: d["frames"][0]["annotations"][0].update(segmentation=None, bbox=[secret, 1, 2, 3]),
        lambda d: d["objects"][0].update(id=secret),
        lambda d: d["objects"][0].update(score=secret),
    ):
        bad = json.loads(json.dumps(doc))
        edit(bad)
        with pytest.raises(ValueError) as caught:
            loads(json.dumps(bad).encode())
        assert "SECRET" not in str(caught.value), str(caught.value)


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR says width x height (CRC fixed), so only the header is big."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_png_frames_are_size_checked_from_their_header_before_decoding(tmp_path):
    bare = zip_of({"00000.png": _png_claiming(6000, 6000)}, zipfile.ZIP_STORED)
    with peak_memory() as memory, pytest.raises(FieldError, match="per frame"):
        loads(bare, "zip", fps=8)
    assert memory.peak < 8 * MiB
    good = json.loads(zipfile.ZipFile(io.BytesIO(dumps(small_sequence(), "zip"))).read("sequence.json"))
    lying = zip_of({"sequence.json": json.dumps(good).encode(), "00000.png": _png_claiming(8000, 8000),
                  "00001.png": _png_claiming(4, 4)}, zipfile.ZIP_STORED)  # fmt: skip
    with pytest.raises(FieldError, match="is 8000x8000, expected 4x4"):
        loads(lying, "zip")
    with pytest.raises(ValueError, match="not a readable PNG"):
        loads(zip_of({"00000.png": b"\x89PNG garbage"}, zipfile.ZIP_STORED), "zip", fps=8)
