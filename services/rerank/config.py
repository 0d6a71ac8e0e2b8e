"""Settings of the RerankService process: flags whose defaults come from KMONO_RERANK_* environment variables
(the flags themselves are `libs.serving.service.ModelFoldersServiceConfig`'s)."""

from __future__ import annotations

from dataclasses import dataclass

from libs.serving.service import ModelFoldersServiceConfig
from recsys.rerank.defaults import DEFAULT_MODEL_PATH


@dataclass(frozen=True)
class RerankServiceConfig(ModelFoldersServiceConfig):
    """Server settings and the Dual-Rerank model folders to serve (the first is the default version)."""

    ENV_PREFIX = "KMONO_RERANK"
    DEFAULT_MODEL = DEFAULT_MODEL_PATH
    FOLDER_HELP = "a Dual-Rerank model folder (`kmono rerank train --out DIR`)"


CONFIG_TYPE = RerankServiceConfig
