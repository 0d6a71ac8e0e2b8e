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

from kmono.common.v1 import media_pb2

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
    "invalid",
    "mask_sequence",
    "media_source",
    "probe_media",
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
