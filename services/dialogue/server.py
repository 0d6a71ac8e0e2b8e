"""DialogueService: multimodal dialogue sessions with streamed replies (KuaiMM).

Run: `kmono serve dialogue` or `python -m services.dialogue`; `--help` lists the flags."""

from collections.abc import Sequence

from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from services.dialogue.config import CONFIG_TYPE, DialogueServiceConfig
from services.dialogue.servicer import DialogueServicer


def build(config: DialogueServiceConfig) -> Built:
    servicer = DialogueServicer()
    registration = ServiceRegistration.from_descriptor(
        dialogue_pb2.DESCRIPTOR.services_by_name["DialogueService"],
        lambda server: dialogue_pb2_grpc.add_DialogueServiceServicer_to_server(servicer, server),
    )
    return [registration], [], []


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve dialogue", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
