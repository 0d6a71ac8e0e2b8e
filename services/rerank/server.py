"""RerankService: orders a candidate list into the slots of a page (Dual-Rerank: the distilled NAR student by
default, the AR teacher on request).

Run: `kmono serve rerank` or `python -m services.rerank`; `--help` lists the flags. The model folders (by default
the embedded Dual-Rerank model, `recsys.rerank.defaults.DEFAULT_MODEL_PATH`) load at start-up, before the port
opens; requests pin one with `model_version`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

from libs.serving import ServiceRegistration
from libs.serving.service import Built, service_main
from recsys.rerank.serving.engine import RerankEngine
from services.rerank.config import CONFIG_TYPE, RerankServiceConfig
from services.rerank.servicer import RerankServicer


def build(config: RerankServiceConfig, *, load_engine: Callable[[], RerankEngine] | None = None) -> Built:
    """The RerankService registration; `load_engine` replaces the model folders (tests)."""
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    engine = load_engine() if load_engine else RerankEngine.load(config.models)
    servicer = RerankServicer(engine)
    registration = ServiceRegistration.from_descriptor(
        rerank_pb2.DESCRIPTOR.services_by_name["RerankService"],
        lambda server: rerank_pb2_grpc.add_RerankServiceServicer_to_server(servicer, server),
    )
    return [registration], [], []


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve rerank", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
