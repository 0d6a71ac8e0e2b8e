"""Wrapping any gRPC method handler in one piece of per-RPC logic.

grpc.aio accepts four handler kinds, and a streaming-response behavior may be an async generator (yield
each message) or a coroutine that calls `context.write`. This module turns every kind into a coroutine
`async def wrapped(request_or_iterator, context)` and hands the actual call to `around`, so the interceptor
writes its logic once. Streamed responses are re-sent with `context.write`, which makes the whole RPC,
messages included, happen inside `around` (the deadline and error mapping cover the stream too).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Invoke = Callable[[], Awaitable[Any]]
"""Runs the original behavior to completion; returns the response of a unary-response RPC, else None."""
Around = Callable[[Invoke, grpc.aio.ServicerContext], Awaitable[Any]]
"""Per-RPC logic that must await `invoke()` (or not, to reject the RPC) and return its result."""


def wrap_method_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """A handler of the same kind and (de)serializers whose every call goes through `around`."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        behavior = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await around(lambda: _respond_unary(behavior, request, context), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
    if handler.stream_unary is not None:
        behavior = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return await around(lambda: _respond_unary(behavior, requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
    if handler.unary_stream is not None:
        behavior = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            await around(lambda: _respond_stream(behavior, request, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **serializers)
    if handler.stream_stream is not None:
        behavior = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
            await around(lambda: _respond_stream(behavior, requests, context), context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
    raise ValueError(f"method handler has no behavior: {handler!r}")


async def _respond_unary(
    behavior: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext
) -> Any:
    result = behavior(request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _respond_stream(
    behavior: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext
) -> None:
    result = behavior(request, context)
    if hasattr(result, "__aiter__"):
        closing = contextlib.aclosing(result) if hasattr(result, "aclose") else contextlib.nullcontext()
        async with closing:
            async for message in result:
                await context.write(message)
    elif inspect.isawaitable(result):
        await result  # the behavior writes its own messages with context.write
    elif result is not None:
        for message in result:
            await context.write(message)
