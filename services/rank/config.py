"""Settings of the RankingService process: flags whose defaults come from KMONO_RANK_* environment variables
(the flags themselves are `libs.serving.service.ModelFoldersServiceConfig`'s)."""

from __future__ import annotations

from dataclasses import dataclass

from libs.serving.service import ModelFoldersServiceConfig
from recsys.mmbee.defaults import DEFAULT_MODEL_PATH


@dataclass(frozen=True)
class RankServiceConfig(ModelFoldersServiceConfig):
    """Server settings and the MMBee model folders to serve (the first is the default version)."""

    ENV_PREFIX = "KMONO_RANK"
    DEFAULT_MODEL = DEFAULT_MODEL_PATH
    FOLDER_HELP = "an MMBee model folder (`kmono mmbee train --out DIR`)"


CONFIG_TYPE = RankServiceConfig
