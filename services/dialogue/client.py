"""The DialogueService in this process on 127.0.0.1 (a free port): what `kmono chat --local` talks to, through the
same gRPC client code as a remote server (`libs.serving.local.LocalServer`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from generation.dialogue.serving.settings import DialogueSettings
from libs.serving import local
from services.dialogue import server
from services.dialogue.config import DialogueServiceConfig


class LocalServer(local.LocalServer):
    def __init__(self, data_dir: Path, backend: str | None = None, **build_kwargs) -> None:
        settings = DialogueSettings() if backend is None else replace(DialogueSettings(), backend=backend)
        config = DialogueServiceConfig(data_dir=data_dir, settings=settings)
        super().__init__(config, server.build, name="kmono-dialogue-local", **build_kwargs)
