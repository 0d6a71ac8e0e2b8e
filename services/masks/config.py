"""Settings of the MaskService process: flags whose defaults come from KMONO_* environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from generation.masks.defaults import GROUNDING_DINO_MODEL, SAM2_MODEL, WINDOW
from libs.cli.flags import DTYPES, env_bool, non_negative_int, positive_int
from libs.serving.inputs import SizeLimits
from libs.serving.service import StatefulServiceConfig


@dataclass(frozen=True)
class MaskServiceConfig(StatefulServiceConfig):
    """Server settings, the data directory of its operations, the extractor's models and the size limits."""

    ENV_PREFIX = "KMONO_MASKS"

    tiny_models: bool = False
    """Random tiny GroundingDINO + SAM2 (tests, the demo): the masks mean nothing, but every path runs."""
    grounding_model: str = GROUNDING_DINO_MODEL
    sam2_model: str = SAM2_MODEL
    device: str | None = None
    """torch device of the extractor; None: cuda when available, else cpu."""
    dtype: str = "auto"
    torch_threads: int = 0
    """CPU threads torch may use (0: torch's default). One thread is much faster on a shared 2-core box."""
    extract_window: int = WINDOW
    """Frames per SAM2 session of an extraction (bounded memory on long videos); 0: one session."""
    max_mask_pixels: int = 1 << 28
    """Largest mask sequence a request may send or ask for, in frames x width x height (268M: about 1,000
    frames of 512 x 512). Larger is INVALID_ARGUMENT naming the field."""
    max_layers: int = SizeLimits.max_layers
    max_objects: int = SizeLimits.max_objects

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        env = os.environ.get
        group = parser.add_argument_group("masks")
        group.add_argument(
            "--tiny-models",
            action=argparse.BooleanOptionalAction,
            default=env_bool("KMONO_MASKS_TINY_MODELS"),
            help="use tiny random extractor models, for tests and the demo (env KMONO_MASKS_TINY_MODELS)",
        )
        group.add_argument(
            "--model-grounding",
            default=env("KMONO_MASKS_GROUNDING_MODEL", GROUNDING_DINO_MODEL),
            help="GroundingDINO hub id or local directory (env KMONO_MASKS_GROUNDING_MODEL; default: %(default)s)",
        )
        group.add_argument(
            "--model-sam2",
            default=env("KMONO_MASKS_SAM2_MODEL", SAM2_MODEL),
            help="SAM2 hub id or local directory (env KMONO_MASKS_SAM2_MODEL; default: %(default)s)",
        )
        group.add_argument(
            "--device",
            default=env("KMONO_MASKS_DEVICE") or None,
            help="torch device of the extractor, e.g. cuda:0 (env KMONO_MASKS_DEVICE; default: cuda if available)",
        )
        group.add_argument(
            "--dtype",
            choices=DTYPES,
            default=env("KMONO_MASKS_DTYPE", cls.dtype),
            help="weights dtype; auto: bfloat16 on CUDA, float32 on CPU (env KMONO_MASKS_DTYPE)",
        )
        group.add_argument(
            "--torch-threads",
            type=non_negative_int,
            default=env("KMONO_MASKS_TORCH_THREADS", str(cls.torch_threads)),
            help="CPU threads for torch; 0: torch's default (env KMONO_MASKS_TORCH_THREADS)",
        )
        group.add_argument(
            "--extract-window",
            type=non_negative_int,
            default=env("KMONO_MASKS_EXTRACT_WINDOW", str(WINDOW)),
            help="frames per SAM2 session; 0: one session per video (env KMONO_MASKS_EXTRACT_WINDOW; default: %(default)s)",
        )
        group.add_argument(
            "--max-mask-pixels",
            type=positive_int,
            default=env("KMONO_MASKS_MAX_MASK_PIXELS", str(cls.max_mask_pixels)),
            help="largest request, in frames x width x height (env KMONO_MASKS_MAX_MASK_PIXELS; default: %(default)s)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MaskServiceConfig:
        return cls(
            **cls.common_settings(args),
            tiny_models=args.tiny_models,
            grounding_model=args.model_grounding,
            sam2_model=args.model_sam2,
            device=args.device,
            dtype=args.dtype,
            torch_threads=args.torch_threads,
            extract_window=args.extract_window,
            max_mask_pixels=args.max_mask_pixels,
        )


CONFIG_TYPE = MaskServiceConfig
