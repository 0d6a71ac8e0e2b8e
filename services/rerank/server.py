"""RerankService: orders a candidate list into slots (Dual-Rerank NAR student).

Run: `kmono serve rerank` or `python -m services.rerank`; `--help` lists the flags."""

from collections.abc import Sequence

from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from services.rerank.config import CONFIG_TYPE, RerankServiceConfig
from services.rerank.servicer import RerankServicer


def build(config: RerankServiceConfig) -> Built:
    servicer = RerankServicer()
    registration = ServiceRegistration.from_descriptor(
        rerank_pb2.DESCRIPTOR.services_by_name["RerankService"],
        lambda server: rerank_pb2_grpc.add_RerankServiceServicer_to_server(servicer, server),
    )
    return [registration], [], []


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve rerank", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
