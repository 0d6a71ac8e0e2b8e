"""RankingService: scores live-stream candidates for a user by gift-through-rate (MMBee).

Run: `kmono serve rank` or `python -m services.rank`; `--help` lists the flags. The model folders (by
default the embedded MMBee model trained on the synthetic live-streaming world) load at start-up, before the
port opens; requests pin one with `model_version`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from recsys.mmbee.engine import RankingEngine
from services.rank.config import CONFIG_TYPE, RankServiceConfig
from services.rank.servicer import RankingServicer


def build(config: RankServiceConfig, *, load_engine: Callable[[], RankingEngine] | None = None) -> Built:
    """The RankingService registration; `load_engine` replaces the model folders (tests)."""
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    engine = load_engine() if load_engine else RankingEngine.load(config.models)
    servicer = RankingServicer(engine)
    registration = ServiceRegistration.from_descriptor(
        rank_pb2.DESCRIPTOR.services_by_name["RankingService"],
        lambda server: rank_pb2_grpc.add_RankingServiceServicer_to_server(servicer, server),
    )
    return [registration], [], []


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve rank", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
