"""Settings of the VideoGenerationService process: flags whose defaults come from KMONO_* environment variables.

Imports stay light (no torch): `kmono serve video --help` builds this parser.

Paths: every default that names a file of this project is absolute (the engine: the committed shapes default,
found from the package's location), so `kmono serve video` and `kmono video generate --local` work from any
working directory. A path the user gives (flag or environment) is taken relative to the working directory, as
a shell user expects; so is the operations' data directory (`--data-dir`, default `./var`); `--local` runs use a
temporary one."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from generation.masks.defaults import GROUNDING_DINO_MODEL, SAM2_MODEL
from generation.mvideo.defaults import ATTENTION_BACKENDS, SHAPES_DEFAULT_PATH
from generation.mvideo.jobs import VideoLimits
from libs.cli.flags import DTYPES, env_bool, non_negative_int, positive_int
from libs.serving.service import StatefulServiceConfig

DEFAULT_ENGINE_PATH = str(SHAPES_DEFAULT_PATH)
"""The shapes-world embedded default (a diffusers pipeline folder), an absolute path: any working directory."""


@dataclass(frozen=True)
class VideoServiceConfig(StatefulServiceConfig):
    """Server settings, the operations' data directory, the engine, the queue, limits and the artifact store."""

    ENV_PREFIX = "KMONO_VIDEO"

    engine_path: str = DEFAULT_ENGINE_PATH
    """MVideo pipeline folder (`MVideoPipeline.from_pretrained`), loaded once at start-up."""
    tiny_engine: bool = False
    """Random tiny MVideo (tests): the videos mean nothing, but every path runs in a fraction of a second."""
    vace_path: str | None = None
    """Wan2.1-VACE pipeline folder or hub id for ENGINE_VACE; None: ENGINE_VACE is INVALID_ARGUMENT."""
    tiny_masks: bool = False
    """Random tiny GroundingDINO + SAM2 for reference-video requests (tests)."""
    grounding_model: str = GROUNDING_DINO_MODEL
    """GroundingDINO hub id or local directory for reference-video requests (loaded on the first one)."""
    sam2_model: str = SAM2_MODEL
    """SAM2 hub id or local directory for reference-video requests."""
    device: str | None = None
    dtype: str = "auto"
    """Weights' dtype: auto (bfloat16 on CUDA, float32 elsewhere), bfloat16, float16 or float32."""
    torch_threads: int = 0
    attention: str = "auto"
    """Attention backend: auto (xFormers when installed and on CUDA, else PyTorch SDPA), sdpa or xformers."""
    max_frames: int = VideoLimits.max_frames
    max_pixels: int = VideoLimits.max_pixels
    """Largest output, frames x width x height (67M: 256 frames of 512 x 512)."""
    max_inline_mask_bytes: int = 8 << 20
    max_steps: int = VideoLimits.max_steps
    artifact_url: str = ""
    """fsspec URL of the artifact store (s3://bucket/prefix, memory://x, a directory); empty: <data-dir>/video/artifacts."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        env = os.environ.get
        group = parser.add_argument_group("video")
        group.add_argument(
            "--engine-path",
            default=env("KMONO_VIDEO_ENGINE_PATH", DEFAULT_ENGINE_PATH),
            help="MVideo pipeline folder (env KMONO_VIDEO_ENGINE_PATH; default: the shapes-world default)",
        )
        group.add_argument(
            "--tiny-engine",
            action=argparse.BooleanOptionalAction,
            default=env_bool("KMONO_VIDEO_TINY_ENGINE"),
            help="use a tiny random MVideo instead of --engine-path, for tests (env KMONO_VIDEO_TINY_ENGINE)",
        )
        group.add_argument(
            "--vace-path",
            default=env("KMONO_VIDEO_VACE_PATH") or None,
            help="Wan2.1-VACE pipeline for ENGINE_VACE (env KMONO_VIDEO_VACE_PATH; default: not served)",
        )
        group.add_argument(
            "--tiny-masks",
            action=argparse.BooleanOptionalAction,
            default=env_bool("KMONO_VIDEO_TINY_MASKS"),
            help="tiny random mask extractor for reference-video requests (env KMONO_VIDEO_TINY_MASKS)",
        )
        group.add_argument(
            "--model-grounding",
            default=env("KMONO_VIDEO_GROUNDING_MODEL", cls.grounding_model),
            help="GroundingDINO for reference videos, hub id or local directory "
            "(env KMONO_VIDEO_GROUNDING_MODEL; default: %(default)s)",
        )
        group.add_argument(
            "--model-sam2",
            default=env("KMONO_VIDEO_SAM2_MODEL", cls.sam2_model),
            help="SAM2 for reference videos, hub id or local directory (env KMONO_VIDEO_SAM2_MODEL; default: %(default)s)",
        )
        group.add_argument(
            "--device",
            default=env("KMONO_VIDEO_DEVICE") or None,
            help="torch device (default: cuda if available)",
        )
        group.add_argument(
            "--dtype",
            choices=DTYPES,
            default=env("KMONO_VIDEO_DTYPE", cls.dtype),
            help="weights' dtype; auto: bfloat16 on CUDA, float32 on CPU (env KMONO_VIDEO_DTYPE)",
        )
        group.add_argument(
            "--torch-threads",
            type=non_negative_int,
            default=env("KMONO_VIDEO_TORCH_THREADS", str(cls.torch_threads)),
            help="CPU threads for torch; 0: torch's default (env KMONO_VIDEO_TORCH_THREADS)",
        )
        group.add_argument(
            "--attention",
            choices=ATTENTION_BACKENDS,
            default=env("KMONO_VIDEO_ATTENTION", cls.attention),
            help="attention backend; auto: xFormers when installed and on CUDA, else PyTorch SDPA "
            "(env KMONO_VIDEO_ATTENTION; default: %(default)s). The backend in use is logged at start-up.",
        )
        group.add_argument(
            "--max-frames",
            type=positive_int,
            default=env("KMONO_VIDEO_MAX_FRAMES", str(cls.max_frames)),
            help="most frames a request may ask for (default: %(default)s)",
        )
        group.add_argument(
            "--max-inline-mask-bytes",
            type=positive_int,
            default=env("KMONO_VIDEO_MAX_INLINE_MASK_BYTES", str(cls.max_inline_mask_bytes)),
            help="largest inline mask_sequence in bytes (default: %(default)s)",
        )
        group.add_argument(
            "--artifact-url",
            default=env("KMONO_VIDEO_ARTIFACT_URL", ""),
            help="fsspec URL of the artifact store, e.g. s3://bucket/videos (default: <data-dir>/video/artifacts)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VideoServiceConfig:
        return cls(
            **cls.common_settings(args),
            engine_path=args.engine_path,
            tiny_engine=args.tiny_engine,
            vace_path=args.vace_path,
            tiny_masks=args.tiny_masks,
            grounding_model=args.model_grounding,
            sam2_model=args.model_sam2,
            device=args.device,
            dtype=args.dtype,
            torch_threads=args.torch_threads,
            attention=args.attention,
            max_frames=args.max_frames,
            max_inline_mask_bytes=args.max_inline_mask_bytes,
            artifact_url=args.artifact_url,
        )

    def resolved_artifact_url(self) -> str:
        return self.artifact_url or os.fspath(Path(self.data_dir, "video", "artifacts").resolve())


CONFIG_TYPE = VideoServiceConfig
