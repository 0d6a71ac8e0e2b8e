"""The server interceptor every kmono service runs behind.

For each RPC, in this order:
0. request decoding: bytes that do not parse as the method's request message are INVALID_ARGUMENT with
   ErrorInfo(reason="MALFORMED_REQUEST") and a message naming the message type (gRPC itself would answer
   UNKNOWN before any handler runs): the request deserializer of every handler is guarded, and the handler sees
   the failure when it takes the request (a streamed request: when it reads that message from the iterator).
   A handler that reads with `context.read()` instead of its request iterator gets the undecodable marker;
   none of ours does;
1. concurrency cap: past `max_concurrent_rpcs` in-flight RPCs the call is rejected with RESOURCE_EXHAUSTED,
   ErrorInfo(reason="TOO_MANY_REQUESTS") and RetryInfo; health and reflection never count (see limits.py);
2. deadline: the client's deadline, or `default_deadline_seconds` when it set none, is exposed through
   `libs.serving.deadlines` for the handler's whole call tree; the default one is also enforced here
   (a client deadline is enforced by gRPC itself, which cancels the handler);
3. error mapping: a raised exception becomes a rich status (errors.py); a handler's own `context.abort`
   or `context.set_code` is kept as it is;
4. metrics and one access-log line with the final code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2

from libs.serving.access_log import log_rpc
from libs.serving.deadlines import deadline_scope
from libs.serving.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    abort_with_status,
    find_detail,
    status_code,
    status_from_exception,
)
from libs.serving.handlers import Invoke, wrap_method_handler
from libs.serving.limits import ConcurrencyLimiter, is_exempt
from libs.serving.metrics import RpcMetrics

REQUEST_ID_KEY = "x-request-id"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
"""ErrorInfo reason of a request whose bytes are not the method's request message."""


class ServingInterceptor(grpc.aio.ServerInterceptor):
    """Applies the concurrency cap, deadlines, error mapping, metrics and access log to every RPC."""

    def __init__(
        self,
        *,
        metrics: RpcMetrics,
        max_concurrent_rpcs: int,
        default_deadline_seconds: float | None = None,
        overload_retry_after_seconds: float = 1.0,
    ):
        self._metrics = metrics
        self._limiter = ConcurrencyLimiter(max_concurrent_rpcs)
        self._default_deadline_seconds = default_deadline_seconds
        self._overload_retry_after_seconds = overload_retry_after_seconds

    @property
    def in_flight(self) -> int:
        """RPCs counted against the cap right now (probes excluded)."""
        return self._limiter.in_flight

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata or ()
        request_id = next((value for key, value in metadata if key == REQUEST_ID_KEY), None)

        async def around(invoke: Invoke, context: grpc.aio.ServicerContext) -> Any:
            return await self._handle(method, request_id, invoke, context)

        return wrap_method_handler(_guard_decoding(handler), around)

    async def _handle(
        self, method: str, request_id: str | None, invoke: Invoke, context: grpc.aio.ServicerContext
    ) -> Any:
        started = time.monotonic()
        probe = is_exempt(method)
        admitted = probe or self._limiter.try_acquire()
        deadline, enforce_seconds = self._deadline(context, started)
        code, error_id = grpc.StatusCode.OK, None
        try:
            if not admitted:
                raise self._overloaded()
            with self._metrics.track_in_flight(method), deadline_scope(deadline):
                result = await _within(invoke, enforce_seconds)
            code = context.code() or grpc.StatusCode.OK
            return result
        except grpc.aio.AbortError:  # the handler aborted with a status of its own choosing
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:  # client cancelled, its deadline passed, or the server is stopping
            expired = deadline is not None and time.monotonic() >= deadline
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            status = status_from_exception(exc)
            code = status_code(status)
            info = find_detail(status, error_details_pb2.ErrorInfo)
            error_id = info.metadata.get("errorId") if info is not None else None
            await abort_with_status(context, status)
        finally:
            if admitted and not probe:
                self._limiter.release()
            seconds = time.monotonic() - started
            self._metrics.observe(method, code, seconds)
            log_rpc(
                method=method,
                code=code,
                duration_ms=seconds * 1000,
                peer=context.peer(),
                request_id=request_id,
                error_id=error_id,
                probe=probe,
            )

    def _deadline(self, context: grpc.aio.ServicerContext, now: float) -> tuple[float | None, float | None]:
        """(absolute deadline to expose, seconds to enforce here or None when gRPC enforces it)."""
        remaining = context.time_remaining()
        if remaining is not None:
            return now + remaining, None
        if self._default_deadline_seconds is not None:
            return now + self._default_deadline_seconds, self._default_deadline_seconds
        return None, None

    def _overloaded(self) -> ResourceExhaustedError:
        limit = self._limiter.limit
        return ResourceExhaustedError(
            self._overload_retry_after_seconds,
            reason="TOO_MANY_REQUESTS",
            message=f"server is handling its maximum of {limit} concurrent RPCs; retry later",
            metadata={"maxConcurrentRpcs": str(limit)},
        )


class _Undecodable:
    """What the guarded deserializer returns for bytes that do not parse: the handler raises on seeing it."""

    __slots__ = ("error", "message_name")

    def __init__(self, message_name: str, error: Exception) -> None:
        self.message_name = message_name
        self.error = error

    def invalid_argument(self) -> InvalidArgumentError:
        detail = str(self.error) or type(self.error).__name__
        return InvalidArgumentError(
            [],
            f"the request is not a valid serialized {self.message_name}: {detail}",
            reason=MALFORMED_REQUEST,
        )


def _decoded(request: Any) -> Any:
    """`request`, or INVALID_ARGUMENT when its bytes did not parse."""
    if isinstance(request, _Undecodable):
        raise request.invalid_argument()
    return request


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


def _guard_decoding(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a request deserializer that never raises (a failure becomes an `_Undecodable`) and a
    behavior that raises INVALID_ARGUMENT for it, inside the interceptor's error mapping."""
    deserializer = handler.request_deserializer
    if deserializer is None:  # the handler takes raw bytes
        return handler
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    message_name = getattr(descriptor, "full_name", None) or "request message"

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or anything else the client's bytes make a parser raise
            return _Undecodable(message_name, exc)

    kwargs = {"request_deserializer": deserialize, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: unary_unary(_decoded(request), context), **kwargs
        )
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            lambda request, context: unary_stream(_decoded(request), context), **kwargs
        )
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda requests, context: stream_unary(_decoded_stream(requests), context), **kwargs
        )
    if handler.stream_stream is not None:
        stream_stream = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            lambda requests, context: stream_stream(_decoded_stream(requests), context), **kwargs
        )
    return handler


async def _within(invoke: Invoke, timeout_seconds: float | None) -> Any:
    """Await `invoke()`, cancelling it after `timeout_seconds` with DEADLINE_EXCEEDED."""
    if timeout_seconds is None:
        return await invoke()
    timeout = asyncio.timeout(timeout_seconds)
    try:
        async with timeout:
            return await invoke()
    except TimeoutError:
        if timeout.expired():
            raise DeadlineExceededError(f"deadline of {timeout_seconds:g}s exceeded") from None
        raise
