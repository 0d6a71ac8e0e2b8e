"""VideoGenerationService: mask-conditioned text-to-video as long-running operations (MVideo).

Run: `kmono serve video` or `python -m services.video`; `--help` lists the flags."""

from collections.abc import Sequence

from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.serving import ServiceRegistration
from services.skeleton import Built, service_main, with_operations
from services.video.config import CONFIG_TYPE, VideoServiceConfig
from services.video.servicer import VideoGenerationServicer


def build(config: VideoServiceConfig) -> Built:
    servicer = VideoGenerationServicer()
    registration = ServiceRegistration.from_descriptor(
        video_pb2.DESCRIPTOR.services_by_name["VideoGenerationService"],
        lambda server: video_pb2_grpc.add_VideoGenerationServiceServicer_to_server(servicer, server),
    )
    return with_operations(config, "video", registration)


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve video", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
