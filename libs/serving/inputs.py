"""Request fields -> domain values, every bad input as INVALID_ARGUMENT naming its request field (AIP-193).

What two services read the same way lives here: mask sequences, media references (inline bytes, or a URI the
server's `MediaPolicy` allows), size limits, finite numbers and idempotency keys.

    seq = mask_sequence(request.mask_sequence, "mask_sequence", SizeLimits(max_pixels=1 << 28))
    field, source, info = probe_media(request.video, "video", policy)  # allowed, within limits, a frame decodes
    except FieldError as error: raise field_violation(error, "edits[2].translate")

References go through `libs.media.policy.MediaPolicy` (the server's; without one, the policy of the
KMONO_MEDIA_ROOTS / KMONO_MEDIA_SCHEMES environment, which is empty by default: inline data only), sizes through
`libs.media.limits.DecodeLimits` before anything is decoded, and no message names a server path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from kmono.common.v1 import media_pb2, tensor_pb2

from libs.errors import FieldError
from libs.media import MaskSequence, VideoInfo, from_proto
from libs.media.limits import TOO_LARGE, DecodeLimits
from libs.media.policy import MediaPolicy, check_video, public_message
from libs.serving.errors import InvalidArgumentError

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "TOO_LARGE",
    "DecodeLimits",
    "MediaPolicy",
    "SizeLimits",
    "check_request_id",
    "field_violation",
    "finite",
    "float_tensor",
    "invalid",
    "mask_sequence",
    "media_source",
    "probe_media",
    "to_float_tensor",
]
MAX_REQUEST_ID_LENGTH = 128


def invalid(field: str, description: str, *, reason: str | None = None) -> InvalidArgumentError:
    """INVALID_ARGUMENT naming one request field."""
    return InvalidArgumentError.single(field, description, reason=reason)


def field_violation(
    error: FieldError, prefix: str = "", renames: dict[str, str] | None = None
) -> InvalidArgumentError:
    """A domain FieldError as INVALID_ARGUMENT at `prefix.<field>`, its first component renamed by `renames`
    (a domain parameter name -> the request field it came from)."""
    head = error.field.partition(".")[0].partition("[")[0]
    if renames and head in renames:
        error = error.renamed(renames[head])
    error = error.prefixed(prefix)
    return invalid(error.field, public_message(error.reason), reason=error.code)


def finite(value: float, field: str, *, low: float = 0.0, high: float | None = None) -> float:
    """`value` when finite and in [low, high]; else INVALID_ARGUMENT naming `field`."""
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise invalid(field, f"must be {bound}, got {value}")
    return value


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise invalid("request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters (a UUID4 is 36)")


@dataclass(frozen=True)
class SizeLimits:
    """Largest request a server accepts: `max_pixels` frames x width x height per sequence (in or out)."""

    max_pixels: int
    max_layers: int = 64
    max_objects: int = 256

    def decode_limits(self, base: DecodeLimits | None = None) -> DecodeLimits:
        """The decoders' limits for one sequence of this request: `base` (safe defaults) within `max_pixels`
        and `max_objects`."""
        base = base or DecodeLimits()
        return replace(
            base,
            max_pixels=min(base.max_pixels, self.max_pixels),
            max_objects=min(base.max_objects, self.max_objects),
        )

    def check(self, field: str, num_frames: int, width: int, height: int, what: str = "the sequence") -> None:
        total = num_frames * width * height
        if total > self.max_pixels:
            raise invalid(
                field,
                f"{what} would be {num_frames} frames of {width}x{height} = {total} pixels, over this server's "
                f"limit of {self.max_pixels} (frames x width x height)",
                reason=TOO_LARGE,
            )


def mask_sequence(
    msg: media_pb2.MaskSequence, field: str, limits: SizeLimits, decode: DecodeLimits | None = None
) -> MaskSequence:
    """Decode and validate a MaskSequence field (sizes, counts and labels checked before decoding, by
    `limits` and `decode`); errors name the part of it that is wrong (`<field>.frames[3].object_masks[0].rle`)."""
    if not msg.ByteSize():
        raise invalid(field, "required: a mask sequence with width, height, num_frames, fps and frames")
    if msg.width > 0 and msg.height > 0:
        limits.check(field, max(msg.num_frames, len(msg.frames)), msg.width, msg.height)
    try:
        return from_proto(msg, limits=limits.decode_limits(decode))
    except FieldError as error:
        raise field_violation(error, field) from None


def media_source(
    ref: media_pb2.MediaRef, field: str, policy: MediaPolicy | None = None
) -> tuple[str, bytes | str]:
    """(field of the source, the domain source) of a MediaRef: inline bytes, the resolved path of a local file
    under one of `policy`'s roots, or the bytes of a remote URL it allows (fetched now, bounded by
    `policy.max_fetch_bytes`). Anything else is INVALID_ARGUMENT naming the field at fault, saying which rule
    failed and never a server path. `policy` None: `MediaPolicy.from_env()`."""
    source = ref.WhichOneof("source")
    if source is None:
        raise invalid(field, "required: inline_data (the video's bytes) or a uri")
    if source == "inline_data":
        if not ref.inline_data:
            raise invalid(f"{field}.inline_data", "is empty")
        return f"{field}.inline_data", ref.inline_data
    where = f"{field}.uri"
    policy = policy if policy is not None else MediaPolicy.from_env()
    try:
        if policy.is_local(ref.uri):
            return where, str(policy.local_path(ref.uri, where))
        return where, policy.read_bytes(ref.uri, where, policy.max_fetch_bytes)
    except FieldError as error:
        raise field_violation(error) from None


def probe_media(
    ref: media_pb2.MediaRef,
    field: str,
    policy: MediaPolicy | None = None,
    limits: DecodeLimits | None = None,
) -> tuple[str, bytes | str, VideoInfo]:
    """`media_source`, checked to be a video within `limits` (frame size and count from its header, before any
    decoding) whose first frame decodes: (field of the source, the source, the video's facts)."""
    where, source = media_source(ref, field, policy)
    try:
        return where, source, check_video(source, limits or DecodeLimits(), where)
    except FieldError as error:
        raise field_violation(error) from None


MAX_TENSOR_ELEMENTS = 1 << 20
_FLOAT_TYPES = {
    tensor_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    tensor_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
}


def float_tensor(msg: tensor_pb2.Tensor, field: str, max_elements: int = MAX_TENSOR_ELEMENTS) -> np.ndarray:
    """A float32/16/64 `kmono.common.v1.Tensor` (little-endian, row-major) as a float32 array of shape `dims`;
    a wrong dtype, negative or oversized dims, or data of the wrong length is INVALID_ARGUMENT naming `field`.
    (Finiteness is the caller's rule: some features may legitimately be NaN-free, others not.)

    A float32 tensor comes back as a read-only view of the message's bytes, not a copy (a request can carry
    hundreds of them: a ranking request's segment tokens); a caller that writes into it copies it first."""
    dtype = _FLOAT_TYPES.get(msg.dtype)
    if dtype is None:
        names = ", ".join(tensor_pb2.DataType.Name(d) for d in _FLOAT_TYPES)
        # proto3 enums are open: a number this build has no name for arrives as it is (`Name` would raise)
        known = tensor_pb2.DataType.DESCRIPTOR.values_by_number.get(msg.dtype)
        got = known.name if known else f"the unknown value {msg.dtype}"
        raise invalid(f"{field}.dtype", f"must be one of {names}, got {got}")
    dims = tuple(msg.dims)
    if len(dims) == 2:  # the common case (a segment's tokens [seconds, dim]), checked without a generator
        rows, cols = dims
        positive, elements = rows > 0 and cols > 0, rows * cols
    else:
        positive, elements = bool(dims) and min(dims) > 0, math.prod(dims)
    if not positive:
        raise invalid(f"{field}.dims", f"must be one or more positive sizes, got {list(dims)}")
    if elements > max_elements:
        raise invalid(f"{field}.dims", f"{elements} elements is over this server's limit of {max_elements}")
    data = msg.data  # read once: each read of a bytes field builds a new bytes object
    if len(data) != elements * dtype.itemsize:
        raise invalid(
            f"{field}.data",
            f"must hold {elements} x {dtype.itemsize} bytes for dims {list(dims)}, got {len(data)} bytes",
        )
    return np.frombuffer(data, dtype=dtype).astype(np.float32, copy=False).reshape(dims)


def to_float_tensor(array: np.ndarray) -> tensor_pb2.Tensor:
    """The inverse of `float_tensor` (float32), for clients and tests."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, dims=list(array.shape), data=array.tobytes())
