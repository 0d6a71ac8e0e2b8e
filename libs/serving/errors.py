"""Domain errors and their mapping to rich gRPC statuses (AIP-193).

Engines and servicers raise the `KmonoError` subclasses below; they never build gRPC statuses by hand.
The server interceptor turns each into a `google.rpc.Status` carrying an `ErrorInfo` (reason in
UPPER_SNAKE_CASE, domain "kmono") plus the detail AIP-193 asks for: `BadRequest.FieldViolation` for
INVALID_ARGUMENT, `RetryInfo` for RESOURCE_EXHAUSTED and UNAVAILABLE, `ResourceInfo` for NOT_FOUND and
ALREADY_EXISTS. Any other exception is a bug: the client gets INTERNAL with a generic message and an error id,
and the traceback stays in the server log under that id.

`status_from_exception` returns the `google.rpc.Status` itself (not a `grpc.Status`) because long-running
operations store it in `Operation.error` as well as sending it as the RPC status.

What a status echoes is bounded here, so no service can send a trailer over a client's metadata limit (gRPC's
default is 8 KiB; the message travels percent-encoded in `grpc-message`, the details base64-encoded in
`grpc-status-details-bin`). Our choice: any run of non-space characters longer than `MAX_ECHO_CHARS` (128: a
name, id, token, URI or value a client sent) is cut to that many with an ellipsis; the message is then cut to
`MAX_MESSAGE_BYTES` (512) UTF-8 bytes, each field violation's description to `MAX_DESCRIPTION_BYTES` (256) and
at most `MAX_FIELD_VIOLATIONS` (8) are sent; ResourceInfo names, field paths and ErrorInfo metadata values are
echoes too. Servers log the full text where they need it; clients get enough to find what they sent.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import ClassVar, NoReturn, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.errors import UnknownModelVersion

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "kmono"
MAX_ECHO_CHARS = 128
"""Longest run of non-space characters (a name, id, token, URI) a status echoes; longer ones end in an ellipsis."""
MAX_MESSAGE_BYTES = 512
"""Longest status message, in UTF-8 bytes."""
MAX_DESCRIPTION_BYTES = 256
"""Longest description of one field violation or resource, in UTF-8 bytes."""
MAX_FIELD_VIOLATIONS = 8
"""Most field violations one status carries (the message still counts them all)."""
ELLIPSIS = "…"
_LONG_WORD = re.compile(rf"\S{{{MAX_ECHO_CHARS + 1},}}")
# AIP-193: reason is UPPER_SNAKE_CASE, at most 63 characters.
_REASON_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$")

M = TypeVar("M", bound=Message)


class KmonoError(Exception):
    """An error raised on purpose; `code` is its gRPC code and `message` is safe to show to clients."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        if not _REASON_PATTERN.match(self.reason):
            raise ValueError(f"error reason must be UPPER_SNAKE_CASE (<= 63 chars), got {self.reason!r}")
        self.metadata = {str(key): str(value) for key, value in (metadata or {}).items()}

    def status_details(self) -> list[Message]:
        """Detail messages sent after the ErrorInfo; subclasses add BadRequest, RetryInfo, ..."""
        return []


class InvalidArgumentError(KmonoError, ValueError):
    """The request is malformed; `field_violations` are (field path, description) pairs."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        field_violations: Iterable[tuple[str, str]],
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        self.field_violations = [(str(field), str(description)) for field, description in field_violations]
        if not self.field_violations and not message:
            raise ValueError("InvalidArgumentError needs at least one field violation or a message")
        if message is None:
            message = "invalid argument: " + "; ".join(f"{f}: {d}" for f, d in self.field_violations)
        super().__init__(message, reason=reason, metadata=metadata)

    @classmethod
    def single(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgumentError:
        """The common case: one field is wrong."""
        return cls([(field, description)], reason=reason)

    def status_details(self) -> list[Message]:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in self.field_violations
        ]
        return [error_details_pb2.BadRequest(field_violations=violations)] if violations else []


class _ResourceError(KmonoError):
    """An error about one named resource; adds ResourceInfo when the resource is given."""

    def __init__(
        self,
        message: str,
        *,
        resource_type: str = "",
        resource_name: str = "",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.resource_type = resource_type
        self.resource_name = resource_name

    def status_details(self) -> list[Message]:
        if not (self.resource_type or self.resource_name):
            return []
        info = error_details_pb2.ResourceInfo(
            resource_type=self.resource_type, resource_name=self.resource_name, description=self.message
        )
        return [info]


class NotFoundError(_ResourceError):
    """The named resource (operation, artifact, session, ...) does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExistsError(_ResourceError):
    """A resource with that name already exists (or a request_id was reused with a different request)."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(KmonoError):
    """The system is not in a state the request needs (e.g. the model is not loaded); retrying won't help."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class AbortedError(KmonoError):
    """A concurrency conflict (e.g. an operation changed underneath); retry the whole read-modify-write."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class DeadlineExceededError(KmonoError):
    """The work did not finish before the RPC's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class UnimplementedError(KmonoError):
    """The request asks for something this server does not support (e.g. a backend not built in)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class _RetryableError(KmonoError):
    """An error the client should retry later; adds RetryInfo when a delay is known."""

    retry_after_seconds: float | None = None

    def status_details(self) -> list[Message]:
        if self.retry_after_seconds is None:
            return []
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(self.retry_after_seconds * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhaustedError(_RetryableError):
    """A quota, queue or concurrency limit is hit; the client may retry after `retry_after_seconds`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        retry_after_seconds: float,
        reason: str = "RESOURCE_EXHAUSTED",
        message: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ):
        if retry_after_seconds < 0:
            raise ValueError(f"retry_after_seconds must be >= 0, got {retry_after_seconds}")
        message = message or f"resource exhausted ({reason}); retry after {retry_after_seconds:g}s"
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(_RetryableError):
    """The server (or a backend it needs) is temporarily unable to serve; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


def status_from_exception(exc: BaseException) -> status_pb2.Status:
    """The rich status a client should see for `exc`.

    A `KmonoError` keeps its code, message and details. Anything else is logged here with its traceback
    under a fresh error id, and becomes INTERNAL with a message that names only that id.
    """
    if isinstance(exc, KmonoError):
        return _rich_status(exc.code, exc.message, exc.reason, exc.metadata, exc.status_details())
    error_id = secrets.token_hex(8)
    logger.error("unexpected %s, error id %s", type(exc).__name__, error_id, exc_info=exc)
    message = f"internal error (error id {error_id})"
    return _rich_status(grpc.StatusCode.INTERNAL, message, "INTERNAL", {"errorId": error_id}, [])


def _rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str], extra: list[Message]
) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=bound_text(message, MAX_MESSAGE_BYTES))
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata))
    for detail in (info, *extra):
        status.details.add().Pack(_bounded(detail))
    return status


def bound_echo(text: str, max_chars: int = MAX_ECHO_CHARS) -> str:
    """`text`, cut to `max_chars` characters and an ellipsis when longer: how much of a client's input to echo."""
    return text if len(text) <= max_chars else text[:max_chars] + ELLIPSIS


def bound_text(text: str, max_bytes: int) -> str:
    """`text` with every run of non-space characters longer than `MAX_ECHO_CHARS` cut by `bound_echo`, then cut
    to at most `max_bytes` UTF-8 bytes (ending in an ellipsis where anything was cut)."""
    text = _LONG_WORD.sub(lambda match: bound_echo(match.group()), text)
    data = text.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return text
    keep = max_bytes - len(ELLIPSIS.encode())
    return data[:keep].decode("utf-8", errors="ignore") + ELLIPSIS


def _bounded(detail: Message) -> Message:
    """`detail` with what it echoes bounded (see the module docstring); other detail types unchanged."""
    if isinstance(detail, error_details_pb2.ErrorInfo):
        bounded = error_details_pb2.ErrorInfo()
        bounded.CopyFrom(detail)
        for key, value in detail.metadata.items():
            bounded.metadata[key] = bound_text(value, MAX_DESCRIPTION_BYTES)
        return bounded
    if isinstance(detail, error_details_pb2.BadRequest):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=bound_text(violation.field, MAX_DESCRIPTION_BYTES),
                description=bound_text(violation.description, MAX_DESCRIPTION_BYTES),
            )
            for violation in detail.field_violations[:MAX_FIELD_VIOLATIONS]
        ]
        return error_details_pb2.BadRequest(field_violations=violations)
    if isinstance(detail, error_details_pb2.ResourceInfo):
        return error_details_pb2.ResourceInfo(
            resource_type=bound_echo(detail.resource_type),
            resource_name=bound_echo(detail.resource_name),
            owner=bound_echo(detail.owner),
            description=bound_text(detail.description, MAX_DESCRIPTION_BYTES),
        )
    return detail


def find_detail(status: status_pb2.Status, detail_type: type[M]) -> M | None:
    """The first detail of `detail_type` packed in `status` (e.g. `ErrorInfo`), or None."""
    for packed in status.details:
        if packed.Is(detail_type.DESCRIPTOR):
            detail = detail_type()
            packed.Unpack(detail)
            return detail
    return None


def status_code(status: status_pb2.Status) -> grpc.StatusCode:
    """The `grpc.StatusCode` of a `google.rpc.Status`."""
    return _CODES_BY_NUMBER[status.code]


async def abort_with_status(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> NoReturn:
    """End the RPC with `status`; its details travel in the `grpc-status-details-bin` trailer."""
    grpc_status = rpc_status.to_status(status)
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


async def abort_with_exception(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with the status `status_from_exception(exc)` gives."""
    await abort_with_status(context, status_from_exception(exc))


_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def model_version_not_found(error: UnknownModelVersion) -> NotFoundError:
    """NOT_FOUND for a pinned `model_version` the engine has not loaded (the message lists the loaded ones)."""
    return NotFoundError(
        str(error),
        resource_type="model_version",
        resource_name=error.version,
        metadata={"field": "model_version"},
    )
