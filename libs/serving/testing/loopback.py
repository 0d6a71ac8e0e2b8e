"""Running a server on 127.0.0.1 inside a test, with bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from libs.serving.config import ServerConfig
from libs.serving.server import Hook, KmonoServer, ServiceRegistration, build_server

T = TypeVar("T")

TEST_CONFIG = ServerConfig(host="127.0.0.1", port=0, grace_seconds=1.0)


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """`asyncio.run` with a time limit, so a hung test fails instead of blocking the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def loopback_server(
    registrations: Sequence[ServiceRegistration],
    *,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    **config_overrides: Any,
) -> AsyncIterator[tuple[KmonoServer, grpc.aio.Channel]]:
    """A started server on 127.0.0.1 (port 0) and an open channel to it; both closed on exit."""
    config = dataclasses.replace(TEST_CONFIG, **config_overrides)
    server = build_server(config, registrations, on_startup=on_startup, on_shutdown=on_shutdown)
    await server.start()
    options = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
    ]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
            yield server, channel
    finally:
        await server.stop(0)


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The rich `google.rpc.Status` a failed call carried in its `grpc-status-details-bin` trailer."""
    return rpc_status.from_call(error)
