"""The DialogueService in this process on 127.0.0.1 (a free port): what `kmono chat --local` talks to, through the
same gRPC client code as a remote server (the shape of `services.video.client.LocalServer`)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

from generation.dialogue.serving.settings import DialogueSettings
from libs.serving import build_server
from libs.serving.config import ServerConfig
from services.dialogue import server
from services.dialogue.config import DialogueServiceConfig


class LocalServer:
    def __init__(self, data_dir: Path, backend: str | None = None, **build_kwargs) -> None:
        settings = DialogueSettings() if backend is None else replace(DialogueSettings(), backend=backend)
        self.config = DialogueServiceConfig(
            server=ServerConfig(host="127.0.0.1", port=0, grace_seconds=1.0),
            data_dir=data_dir,
            settings=settings,
        )
        self._build_kwargs = build_kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kmono-dialogue-local", daemon=True
        )
        self._server = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        self._thread.start()

        async def start() -> int:
            registrations, on_startup, on_shutdown = server.build(self.config, **self._build_kwargs)
            self._server = build_server(
                self.config.server, registrations, on_startup=on_startup, on_shutdown=on_shutdown
            )
            return await self._server.start()

        self.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(1.0), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
