"""A service running in this process on 127.0.0.1 (a free port), for `kmono <service> --local` and tests.

    with LocalServer(config, server.build, name="kmono-video-local") as local:
        channel = grpc.insecure_channel(local.address)

The server runs on its own event loop in a daemon thread, so a synchronous client (the CLIs) talks to it through
the same gRPC code as to a remote server. `config` is a service config with a `server` field (its host and port
are replaced by 127.0.0.1 and a free port); `build(config, **build_kwargs)` is the service's `server.build`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from libs.serving.server import build_server

STOP_GRACE_SECONDS = 1.0


class LocalServer:
    def __init__(
        self, config: Any, build: Callable[..., Any], *, name: str = "kmono-local", **build_kwargs: Any
    ):
        self.config = replace(config, server=replace(config.server, host="127.0.0.1", port=0))
        self._build = lambda: build(self.config, **build_kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()

        async def start() -> int:
            registrations, on_startup, on_shutdown = self._build()
            self._server = build_server(
                self.config.server, registrations, on_startup=on_startup, on_shutdown=on_shutdown
            )
            return await self._server.start()

        self.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            stopping = self._server.stop(STOP_GRACE_SECONDS)
            asyncio.run_coroutine_threadsafe(stopping, self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
