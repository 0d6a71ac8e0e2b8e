"""Settings of the VideoGenerationService process: flags whose defaults come from KMONO_* environment variables."""

from dataclasses import dataclass

from services.skeleton import StatefulServiceConfig


@dataclass(frozen=True)
class VideoServiceConfig(StatefulServiceConfig):
    """Server settings and the data directory of its operations; engine settings join when the engine lands."""


CONFIG_TYPE = VideoServiceConfig
