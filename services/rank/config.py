"""Settings of the RankingService process: flags whose defaults come from KMONO_* environment variables."""

from dataclasses import dataclass

from libs.serving.service import BasicServiceConfig


@dataclass(frozen=True)
class RankServiceConfig(BasicServiceConfig):
    """Server settings; engine settings join when the engine lands."""


CONFIG_TYPE = RankServiceConfig
