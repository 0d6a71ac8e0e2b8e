"""Settings of the RerankService process: flags whose defaults come from KMONO_* environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from libs.cli.flags import non_negative_int
from libs.serving.service import BasicServiceConfig
from recsys.rerank.defaults import DEFAULT_MODEL_PATH


@dataclass(frozen=True)
class RerankServiceConfig(BasicServiceConfig):
    """Server settings and the Dual-Rerank model folders to serve (the first is the default version)."""

    models: tuple[Path, ...] = field(default_factory=lambda: (DEFAULT_MODEL_PATH,))
    torch_threads: int = 0
    """CPU threads torch may use (0: torch's default)."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        env = os.environ.get
        group = parser.add_argument_group("rerank")
        group.add_argument(
            "--model",
            dest="models",
            action="append",
            type=Path,
            help="a Dual-Rerank model folder (`kmono rerank train --out DIR`); repeat to serve several versions, "
            "the first is the default (env KMONO_RERANK_MODELS, comma-separated; default: the embedded model "
            f"{DEFAULT_MODEL_PATH})",
        )
        group.add_argument(
            "--torch-threads",
            type=non_negative_int,
            default=env("KMONO_RERANK_TORCH_THREADS", "0"),
            help="CPU threads for torch; 0: torch's default (env KMONO_RERANK_TORCH_THREADS)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RerankServiceConfig:
        models = args.models or [Path(p) for p in os.environ.get("KMONO_RERANK_MODELS", "").split(",") if p]
        base = BasicServiceConfig.from_args(args)
        return cls(
            server=base.server,
            models=tuple(models) or (DEFAULT_MODEL_PATH,),
            torch_threads=args.torch_threads,
        )


CONFIG_TYPE = RerankServiceConfig
