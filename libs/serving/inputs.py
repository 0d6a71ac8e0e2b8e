"""Request fields -> domain values, every bad input as INVALID_ARGUMENT naming its request field (AIP-193).

What two services read the same way lives here: mask sequences, media references (inline bytes or a file://
URI), size limits, finite numbers and idempotency keys.

    seq = mask_sequence(request.mask_sequence, "mask_sequence", SizeLimits(max_pixels=1 << 28))
    field, info = probe_media(request.video, "video")     # the video is readable; its frame count and size
    except FieldError as error: raise field_violation(error, "edits[2].translate")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kmono.common.v1 import media_pb2

from libs.errors import FieldError
from libs.media import MaskSequence, VideoInfo, from_proto, probe_video
from libs.media.refs import file_uri_path
from libs.serving.errors import InvalidArgumentError

TOO_LARGE = "MASK_SEQUENCE_TOO_LARGE"
"""ErrorInfo reason of a request over a size limit."""
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
    return invalid(error.field, error.reason, reason=error.code)


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

    def check(self, field: str, num_frames: int, width: int, height: int, what: str = "the sequence") -> None:
        total = num_frames * width * height
        if total > self.max_pixels:
            raise invalid(
                field,
                f"{what} would be {num_frames} frames of {width}x{height} = {total} pixels, over this server's "
                f"limit of {self.max_pixels} (frames x width x height)",
                reason=TOO_LARGE,
            )


def mask_sequence(msg: media_pb2.MaskSequence, field: str, limits: SizeLimits) -> MaskSequence:
    """Decode and validate a MaskSequence field (size checked before decoding); errors name the part of it
    that is wrong (`<field>.frames[3].object_masks[0].rle`)."""
    if not msg.ByteSize():
        raise invalid(field, "required: a mask sequence with width, height, num_frames, fps and frames")
    if msg.width > 0 and msg.height > 0:
        limits.check(field, max(msg.num_frames, len(msg.frames)), msg.width, msg.height)
    try:
        return from_proto(msg)
    except FieldError as error:
        raise field_violation(error, field) from None


def media_source(ref: media_pb2.MediaRef, field: str) -> tuple[str, bytes | str]:
    """(field of the source, the domain source) of a MediaRef: inline bytes, or the path of a file:// URI
    that exists. Anything else is INVALID_ARGUMENT naming the field at fault."""
    source = ref.WhichOneof("source")
    if source is None:
        raise invalid(field, "required: inline_data (MP4 bytes) or a file:// uri")
    if source == "inline_data":
        if not ref.inline_data:
            raise invalid(f"{field}.inline_data", "is empty")
        return f"{field}.inline_data", ref.inline_data
    path = file_uri_path(ref.uri)
    if path is None:
        raise invalid(f"{field}.uri", f"unsupported URI {ref.uri!r}; send inline_data or a file:// URI")
    if not path.is_file():
        raise invalid(f"{field}.uri", f"no such file {path}")
    return f"{field}.uri", str(path)


def probe_media(ref: media_pb2.MediaRef, field: str) -> tuple[str, bytes | str, VideoInfo]:
    """`media_source`, checked to be a readable video: (field of the source, the source, the video's facts)."""
    where, source = media_source(ref, field)
    try:
        return where, source, probe_video(source)
    except (ValueError, OSError) as exc:  # VideoDecodeError is a ValueError
        raise invalid(where, str(exc)) from None
