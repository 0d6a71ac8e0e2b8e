import io
import zipfile

import numpy as np
import pytest

from libs.errors import FieldError
from libs.media.limits import (
    TOO_LARGE,
    DecodeLimits,
    json_depth,
    open_npz,
    open_zip,
    parse_json,
    read_npy,
)
from libs.media.testing import ENCRYPTED, patch_zip_headers, zip_of


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError, match="max_frames must be a positive integer"):
        DecodeLimits(max_frames=0)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        DecodeLimits(max_bytes=True)


def test_check_sequence_names_the_limit_with_code_too_large():
    limits = DecodeLimits(max_pixels=1000, max_frame_pixels=100, max_frames=5)
    limits.check_sequence(5, 10, 10)
    for frames, width, height, message in [(1, 11, 10, "per frame"), (6, 5, 5, "limit of 5")]:
        with pytest.raises(FieldError, match=message) as caught:
            limits.check_sequence(frames, width, height, "JSON")
        assert caught.value.code == TOO_LARGE and caught.value.field == ""
    with pytest.raises(FieldError, match="frames x width x height"):
        DecodeLimits(max_pixels=99).check_sequence(1, 10, 10)


def test_json_depth_skips_strings_and_deep_json_is_refused_before_parsing():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads would raise RecursionError
    with pytest.raises(FieldError, match="nested 100000 deep") as caught:
        parse_json(deep, DecodeLimits())
    assert caught.value.code == TOO_LARGE
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json(b"\xff\xfe", DecodeLimits())
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json(b"1" * 5000, DecodeLimits())  # over Python's int digit limit
    with pytest.raises(FieldError, match="over this reader's limit of 10"):
        parse_json(b"[" + b"1," * 10 + b"1]", DecodeLimits(max_bytes=10))


def test_open_zip_refuses_encrypted_unknown_compression_bombs_and_too_many_members():
    limits = DecodeLimits(max_decompressed_bytes=1 << 20)
    bomb = zip_of({"a.png": bytes(10 << 20)})  # 10 MiB of zeros deflate to about 10 KiB
    assert len(bomb) < 20_000
    with pytest.raises(FieldError, match="inflates to 10485760 bytes") as caught:
        open_zip(io.BytesIO(bomb), limits, "the zip")
    assert caught.value.code == TOO_LARGE

    encrypted = patch_zip_headers(zip_of({"a.png": b"x"}, zipfile.ZIP_STORED), flags=ENCRYPTED)
    with pytest.raises(ValueError, match="encrypted"):
        open_zip(io.BytesIO(encrypted), limits, "the zip")

    with pytest.raises(ValueError, match="compression method 12 is not supported"):
        open_zip(io.BytesIO(zip_of({"a": b"x"}, zipfile.ZIP_BZIP2)), limits, "the zip")

    many = zip_of({f"{i}.png": b"" for i in range(20)})
    with pytest.raises(FieldError, match="20 members"):
        open_zip(io.BytesIO(many), DecodeLimits(max_frames=3), "the zip")

    for junk in (b"", b"PK\x03\x04" + b"\x00" * 50, b"not a zip"):
        with pytest.raises(ValueError, match="not a readable zip"):
            open_zip(io.BytesIO(junk), limits, "the zip")


def test_a_zip_member_without_a_name_is_a_value_error():
    """Found by the atheris run of `make reliability` (an .npz whose member name was cut to nothing): zipfile's
    own `ZipInfo.is_dir` raised IndexError on it, which no decoder caller expects."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr(zipfile.ZipInfo("masks.npy"), b"x")
        zf.writestr(zipfile.ZipInfo(""), b"x")
    with pytest.raises(ValueError, match="a member has an empty name"):
        open_zip(io.BytesIO(data.getvalue()), DecodeLimits(), "the zip")


def test_zip_members_with_a_bad_crc_or_corrupt_data_are_value_errors():
    data = bytearray(zip_of({"a.txt": b"hello " * 100}))
    data[40] ^= 0xFF  # inside the deflate stream of the only member
    with open_zip(io.BytesIO(bytes(data)), DecodeLimits(), "the zip") as zf:
        with pytest.raises(ValueError, match="a member cannot be read"):
            zf.read("a.txt")
    stored = bytearray(zip_of({"a.txt": b"hello"}, zipfile.ZIP_STORED))
    stored[stored.find(b"hello")] ^= 0x01
    with open_zip(io.BytesIO(bytes(stored)), DecodeLimits(), "the zip") as zf:
        with pytest.raises(ValueError, match="bad CRC"):
            zf.read("a.txt")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_read_npy_checks_the_header_against_the_data():
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(read_npy(_npy(array), DecodeLimits(), "x"), array)
    fortran = np.asfortranarray(array)
    np.testing.assert_array_equal(read_npy(_npy(fortran), DecodeLimits(), "x"), array)
    with pytest.raises(ValueError, match="does not match its data"):
        read_npy(_npy(array)[:-4], DecodeLimits(), "x")
    huge = _npy(np.zeros(1, np.int64)).replace(b"(1,)", b"(10000000000000,)")
    with pytest.raises(FieldError, match="over this reader's limit") as caught:
        read_npy(huge, DecodeLimits(), "x")
    assert caught.value.code == TOO_LARGE
    with pytest.raises(ValueError, match="not a readable .npy array"):
        read_npy(b"garbage", DecodeLimits(), "x")
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object arrays are not supported"):
        read_npy(buffer.getvalue(), DecodeLimits(), "x")


def test_open_npz_reads_arrays_by_name():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, a=np.arange(3), b=np.array("text"))
    with open_npz(io.BytesIO(buffer.getvalue()), DecodeLimits(), "the NPZ") as npz:
        assert sorted(npz.files) == ["a", "b"] and "a" in npz
        np.testing.assert_array_equal(npz["a"], np.arange(3))
        assert str(npz["b"]) == "text"
