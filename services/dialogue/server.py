"""DialogueService: multimodal dialogue sessions with streamed replies (KuaiMM).

Run: `kmono serve dialogue` or `python -m services.dialogue`; `--help` lists the flags. The bundled sentence
encoder and the `--backend` language model (default: none, the embedded extractive default) load at start-up,
before the port opens; sessions are kept in `<data dir>/dialogue/sessions.db` and survive restarts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

from generation.dialogue.serving.engine import DialogueEngine
from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from services.dialogue.config import CONFIG_TYPE, DialogueServiceConfig
from services.dialogue.servicer import DialogueServicer


def build(
    config: DialogueServiceConfig,
    *,
    load_engine: Callable[[DialogueServiceConfig], DialogueEngine] | None = None,
) -> Built:
    """The DialogueService registration and a shutdown hook that closes the engine; `load_engine` replaces the
    engine (tests: a scripted language model, a shared encoder)."""
    engine = load_engine(config) if load_engine else DialogueEngine.open(config.sessions_dir, config.settings)
    servicer = DialogueServicer(engine, config.media)
    registration = ServiceRegistration.from_descriptor(
        dialogue_pb2.DESCRIPTOR.services_by_name["DialogueService"],
        lambda server: dialogue_pb2_grpc.add_DialogueServiceServicer_to_server(servicer, server),
    )

    async def close() -> None:
        engine.close()

    return [registration], [], [close]


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve dialogue", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
