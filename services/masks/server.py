"""MaskService: extracts, edits, composes and synthesises mask sequences.

Run: `kmono serve masks` or `python -m services.masks`; `--help` lists the flags."""

from collections.abc import Sequence

from kmono.masks.v1 import masks_pb2, masks_pb2_grpc

from libs.serving import ServiceRegistration
from services.masks.config import MaskServiceConfig
from services.masks.servicer import MaskServicer
from services.skeleton import Built, service_main, with_operations

CONFIG_TYPE = MaskServiceConfig


def build(config: MaskServiceConfig) -> Built:
    servicer = MaskServicer()
    registration = ServiceRegistration.from_descriptor(
        masks_pb2.DESCRIPTOR.services_by_name["MaskService"],
        lambda server: masks_pb2_grpc.add_MaskServiceServicer_to_server(servicer, server),
    )
    return with_operations(config, "masks", registration)


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve masks", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
