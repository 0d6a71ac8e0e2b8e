"""RankingService: scores live-stream candidates for a user by gift-through-rate (MMBee).

Run: `kmono serve rank` or `python -m services.rank`; `--help` lists the flags."""

from collections.abc import Sequence

from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from services.rank.config import CONFIG_TYPE, RankServiceConfig
from services.rank.servicer import RankingServicer


def build(config: RankServiceConfig) -> Built:
    servicer = RankingServicer()
    registration = ServiceRegistration.from_descriptor(
        rank_pb2.DESCRIPTOR.services_by_name["RankingService"],
        lambda server: rank_pb2_grpc.add_RankingServiceServicer_to_server(servicer, server),
    )
    return [registration], [], []


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve rank", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
