"""A bytes-in, bytes-out service for testing the serving kit without compiling protos.

Each method exercises one path of the kit: plain success, raised domain and unexpected errors, a call
that blocks until the test releases it (deterministic concurrency tests), deadline visibility, and the
three streaming kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from libs.serving.deadlines import remaining_seconds
from libs.serving.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from libs.serving.server import ServiceRegistration

ECHO_SERVICE = "kmono.serving.testing.EchoService"
SECRET = "secret-detail-that-must-not-leak"


class EchoService:
    """Behaviors of the echo service; `entered`/`release` let a test hold a `Block` call in flight."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Raise the error the request names."""
        if request == b"invalid":
            raise InvalidArgumentError.single("prompt", "must not be empty")
        if request == b"not_found":
            raise NotFoundError("no such operation", resource_type="operation", resource_name="operations/x")
        if request == b"exhausted":
            raise ResourceExhaustedError(2.5, "QUEUE_FULL")
        if request == b"abort":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "aborted by handler")
        raise RuntimeError(SECRET)

    async def block(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.entered.set()
        await self.release.wait()
        return b"released"

    async def remaining(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """The handler's view of `remaining_seconds()`, as text ("None" without a deadline)."""
        return repr(remaining_seconds()).encode()

    async def sleep(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(float(request))
        return b"slept"

    async def countdown(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Yield "started", sleep `request` seconds, yield "done": a stream that is in flight for a while."""
        yield b"started"
        await asyncio.sleep(float(request))
        yield b"done"

    async def stream_fail(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise InvalidArgumentError.single("count", "must be positive")

    async def collect(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return b"".join([request async for request in requests])

    async def chat(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request.upper()


def echo_registration(service: EchoService | None = None) -> ServiceRegistration:
    """The registration of `service` (a fresh one by default) under ECHO_SERVICE."""
    service = service or EchoService()
    unary = grpc.unary_unary_rpc_method_handler
    handlers = {
        "Echo": unary(service.echo),
        "Fail": unary(service.fail),
        "Block": unary(service.block),
        "Remaining": unary(service.remaining),
        "Sleep": unary(service.sleep),
        "Countdown": grpc.unary_stream_rpc_method_handler(service.countdown),
        "StreamFail": grpc.unary_stream_rpc_method_handler(service.stream_fail),
        "Collect": grpc.stream_unary_rpc_method_handler(service.collect),
        "Chat": grpc.stream_stream_rpc_method_handler(service.chat),
    }
    generic = grpc.method_handlers_generic_handler(ECHO_SERVICE, handlers)
    return ServiceRegistration(ECHO_SERVICE, lambda server: server.add_generic_rpc_handlers((generic,)))
