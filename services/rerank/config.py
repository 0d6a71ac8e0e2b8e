"""Settings of the RerankService process: flags whose defaults come from KMONO_* environment variables."""

from dataclasses import dataclass

from libs.serving.service import BasicServiceConfig


@dataclass(frozen=True)
class RerankServiceConfig(BasicServiceConfig):
    """Server settings; engine settings join when the engine lands."""


CONFIG_TYPE = RerankServiceConfig
