"""One decoding guard for mask sequences and videos from outside: `DecodeLimits`, checked before anything is
allocated.

    limits = DecodeLimits(max_pixels=1 << 26)            # the rest: safe defaults
    seq = loads(data, limits=limits)                      # codecs check sizes from the headers first
    info = check_video(source, limits, "video")           # header sizes, then one frame really decodes

What a small input can make a decoder do, and the limit that stops it before the work starts:

| input | would allocate or do | checked against |
|---|---|---|
| a proto/JSON header declaring a 16384 x 16384 frame (51 bytes) | 3 GB per frame | `max_frame_pixels` (width x height) |
| many frames, or a long sequence of large frames | frames x pixels | `max_frames`, `max_pixels` (frames x width x height) |
| many masks per frame, each an RLE of a full frame | pixels per decoded mask | `max_decoded_pixels` (summed over masks) |
| a file, inline bytes or a remote object | its size | `max_bytes` (before reading: file size, then a bounded read) |
| a zip/npz member (deflate inflates ~1000x) | its uncompressed size | `max_decompressed_bytes` (declared sizes summed, zip members and .npy headers checked against them) |
| nested JSON | recursion | `max_json_depth` (counted on the bytes, before parsing) |
| labels | megabytes per object | `max_label_chars` |
| objects | per-object work | `max_objects` |

Every failure is a `FieldError` (a ValueError): `field` is the part of a proto at fault (`width`,
`objects[2].label`, or "" for the whole sequence), `code` is `TOO_LARGE` for a limit. Messages name the part at
fault and the limit, never a server path or a string taken from the input (our choice: an input may be a file the
caller should not be able to read back through error messages; see `libs.media.policy`).

Zip archives (PNG frames, NPZ) go through `open_zip`: encrypted members, compression other than stored or deflate,
and more members or declared bytes than the limits are refused up front; bad CRCs, truncated or corrupt streams
while reading are ValueErrors, never zlib/EOF/BadZipFile errors.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from libs.errors import FieldError

TOO_LARGE = "MASK_SEQUENCE_TOO_LARGE"
"""`FieldError.code` (and the gRPC ErrorInfo reason) of an input over a limit."""

_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, RuntimeError,
               NotImplementedError, ValueError, KeyError, IndexError)  # fmt: skip


@dataclass(frozen=True)
class DecodeLimits:
    """The largest mask sequence (or video) a decoder builds from outside data. Defaults fit any request the
    services take by default (their own, tighter limits are passed in; see `libs.serving.inputs.SizeLimits`)."""

    max_pixels: int = 1 << 28
    """frames x width x height of one sequence (268M: about 1,000 frames of 512 x 512)."""
    max_frame_pixels: int = 1 << 24
    """width x height of one frame (16.7M: 4096 x 4096)."""
    max_frames: int = 10_000
    max_bytes: int = 64 << 20
    """Encoded size of one input (a file, inline bytes, a fetched object)."""
    max_decompressed_bytes: int = 256 << 20
    """Bytes inflated from the members of one zip or NPZ, all together."""
    max_json_depth: int = 32
    """Nesting of JSON arrays and objects (our layouts need 7)."""
    max_decoded_pixels: int = 1 << 31
    """Pixels of every mask decoded from RLE or polygons, summed (a mask per object per frame)."""
    max_objects: int = 4096
    max_label_chars: int = 256

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"DecodeLimits.{name} must be a positive integer, got {value!r}")

    def check_sequence(self, num_frames: int, width: int, height: int, where: str = "") -> None:
        """FieldError (code TOO_LARGE, field "") when a declared sequence is over the limits."""
        prefix = f"{where}: " if where else ""
        frame = width * height
        if frame > self.max_frame_pixels:
            raise FieldError(
                "",
                f"{prefix}a frame of {width}x{height} = {frame} pixels is over this reader's limit of "
                f"{self.max_frame_pixels} pixels per frame",
                code=TOO_LARGE,
            )
        if num_frames > self.max_frames:
            raise FieldError(
                "",
                f"{prefix}{num_frames} frames is over this reader's limit of {self.max_frames}",
                code=TOO_LARGE,
            )
        if num_frames * frame > self.max_pixels:
            raise FieldError(
                "",
                f"{prefix}{num_frames} frames of {width}x{height} = {num_frames * frame} pixels is over this "
                f"reader's limit of {self.max_pixels} (frames x width x height)",
                code=TOO_LARGE,
            )

    def check_bytes(self, size: int, where: str = "the input") -> None:
        if size > self.max_bytes:
            raise FieldError(
                "", f"{where} is {size} bytes, over this reader's limit of {self.max_bytes}", code=TOO_LARGE
            )

    def check_objects(self, count: int, where: str = "") -> None:
        if count > self.max_objects:
            prefix = f"{where}: " if where else ""
            raise FieldError(
                "",
                f"{prefix}{count} objects is over this reader's limit of {self.max_objects}",
                code=TOO_LARGE,
            )

    def check_label(self, label: str, field_name: str) -> None:
        if len(label) > self.max_label_chars:
            raise FieldError(
                field_name,
                f"a label is at most {self.max_label_chars} characters, got {len(label)}",
                code=TOO_LARGE,
            )

    def budget(self) -> DecodeBudget:
        """A counter of decoded mask pixels for one input."""
        return DecodeBudget(self.max_decoded_pixels)


DEFAULT_LIMITS = DecodeLimits()


@dataclass
class DecodeBudget:
    """Pixels still allowed to be decoded from one input (`DecodeLimits.max_decoded_pixels`)."""

    left: int
    spent: int = field(default=0)

    def spend(self, pixels: int, where: str = "") -> None:
        self.spent += pixels
        if self.spent > self.left:
            prefix = f"{where}: " if where else ""
            raise FieldError(
                "",
                f"{prefix}decoding the masks would take more than this reader's limit of {self.left} mask pixels "
                "(masks x width x height)",
                code=TOO_LARGE,
            )


# -- JSON ------------------------------------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest nesting of arrays/objects in JSON bytes (strings skipped), without parsing."""
    stripped = _JSON_STRING.sub(b'""', data)
    arr = np.frombuffer(stripped, dtype=np.uint8)
    steps = np.isin(arr, (ord("["), ord("{"))).astype(np.int64) - np.isin(arr, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse_json(data: bytes, limits: DecodeLimits, where: str = "JSON") -> Any:
    """`json.loads` of outside bytes: size and nesting checked first; every failure a ValueError."""
    limits.check_bytes(len(data), where)
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise FieldError(
            "",
            f"{where}: nested {depth} deep, over this reader's limit of {limits.max_json_depth}",
            code=TOO_LARGE,
        )
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not valid JSON (not UTF-8 text)") from None
    except (ValueError, RecursionError):  # e.g. an integer of more than 4300 digits
        raise ValueError(f"{where}: not valid JSON (a value this reader cannot take)") from None


# -- zip archives and NPZ --------------------------------------------------------------------------------------


class GuardedZip:
    """A zip whose members were checked against the limits; `read` turns every archive error into ValueError."""

    def __init__(self, zf: zipfile.ZipFile, where: str) -> None:
        self.zf = zf
        self.where = where

    def names(self) -> list[str]:
        return [info.filename for info in self.zf.infolist() if not info.is_dir()]

    def read(self, name: str) -> bytes:
        try:
            return self.zf.read(name)
        except _ZIP_ERRORS as e:
            raise ValueError(f"{self.where}: a member cannot be read ({_zip_reason(e)})") from None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> GuardedZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _zip_reason(error: BaseException) -> str:
    if isinstance(error, zipfile.BadZipFile) and "CRC" in str(error):
        return "bad CRC"
    if isinstance(error, zlib.error | EOFError):
        return "corrupt or truncated data"
    return "corrupt archive"


def open_zip(
    file: IO[bytes] | str, limits: DecodeLimits, where: str, *, max_members: int | None = None
) -> GuardedZip:
    """A zip checked before any member is inflated: member count, no encryption, stored/deflate only, the sum of
    declared sizes within `max_decompressed_bytes` (zipfile never inflates a member past its declared size)."""
    try:
        zf = zipfile.ZipFile(file)
    except _ZIP_ERRORS as e:
        raise ValueError(f"{where}: not a readable zip ({_zip_reason(e)})") from None
    try:
        infos = zf.infolist()
        limit = max_members if max_members is not None else limits.max_frames + 16
        if len(infos) > limit:
            raise FieldError(
                "", f"{where}: {len(infos)} members, over this reader's limit of {limit}", code=TOO_LARGE
            )
        total = 0
        for info in infos:
            if not info.filename:  # zipfile itself fails on these (`ZipInfo.is_dir` indexes the name)
                raise ValueError(f"{where}: a member has an empty name")
            if info.flag_bits & 0x1:
                raise ValueError(f"{where}: encrypted members are not supported")
            if info.compress_type not in _ZIP_METHODS:
                raise ValueError(
                    f"{where}: compression method {info.compress_type} is not supported (stored or deflate)"
                )
            total += info.file_size
        if total > limits.max_decompressed_bytes:
            raise FieldError(
                "",
                f"{where}: inflates to {total} bytes, over this reader's limit of {limits.max_decompressed_bytes}",
                code=TOO_LARGE,
            )
    except BaseException:
        zf.close()
        raise
    return GuardedZip(zf, where)


def read_npy(data: bytes, limits: DecodeLimits, where: str) -> np.ndarray:
    """The array of one .npy member, its header checked (version, no objects, size matching the bytes) first."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError("unsupported .npy version")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError):
        raise ValueError(f"{where}: not a readable .npy array") from None
    if dtype.hasobject:
        raise ValueError(f"{where}: object arrays are not supported")
    count = math.prod(shape)
    offset = f.tell()
    if count * dtype.itemsize > limits.max_decompressed_bytes:
        raise FieldError(
            "", f"{where}: {count * dtype.itemsize} bytes, over this reader's limit of "
            f"{limits.max_decompressed_bytes}", code=TOO_LARGE,
        )  # fmt: skip
    if count * dtype.itemsize != len(data) - offset:
        raise ValueError(f"{where}: the array's header does not match its data (truncated or padded)")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


class Npz:
    """The arrays of an NPZ, read through `open_zip` and `read_npy` (never numpy's pickle or lazy loaders)."""

    def __init__(self, zf: GuardedZip, limits: DecodeLimits) -> None:
        self.zf = zf
        self.limits = limits
        self._members = {n[: -len(".npy")]: n for n in zf.names() if n.endswith(".npy")}
        self.files = list(self._members)

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def __getitem__(self, key: str) -> np.ndarray:
        return read_npy(self.zf.read(self._members[key]), self.limits, f"{self.zf.where} array {key}")

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> Npz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_npz(file: IO[bytes] | str, limits: DecodeLimits, where: str) -> Npz:
    return Npz(open_zip(file, limits, where, max_members=64), limits)


def bounded_read(f: IO[bytes], limit: int, where: str) -> bytes:
    """At most `limit` bytes of `f`; FieldError TOO_LARGE when there are more."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise FieldError("", f"{where} is larger than this reader's limit of {limit} bytes", code=TOO_LARGE)
    return data
