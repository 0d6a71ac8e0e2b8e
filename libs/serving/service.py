"""What every service process shares: the entry point (flags -> config -> build -> serve until SIGTERM), the
config dataclasses with the server settings and the data directory, and the `UNIMPLEMENTED` answer for RPCs
whose engine is not built yet."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from libs.cli.flags import non_negative_float, non_negative_int, positive_int
from libs.media.policy import MediaPolicy, add_media_arguments, media_policy_from_args
from libs.serving.config import ServerConfig
from libs.serving.errors import UnimplementedError
from libs.serving.runner import run
from libs.serving.server import Hook, ServiceRegistration


def not_built_yet(rpc: str, engine: str) -> Callable[..., Any]:
    """An aio handler for `rpc` that answers UNIMPLEMENTED, naming the engine it waits for."""

    async def handler(self: object, request: object, context: object) -> None:
        raise UnimplementedError(
            f"{rpc} is not available yet: its engine ({engine}) is not part of this build",
            reason="ENGINE_NOT_BUILT",
            metadata={"rpc": rpc},
        )

    handler.__name__ = rpc
    return handler


class ServiceConfig(Protocol):
    server: ServerConfig

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None: ...

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceConfig: ...


Built = tuple[Sequence[ServiceRegistration], Sequence[Hook], Sequence[Hook]]


def service_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    config_type: type[ServiceConfig],
    build: Callable[[Any], Built],
) -> int:
    """Parse flags (defaults from KMONO_* env), build the service, serve until SIGTERM; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    config_type.add_arguments(parser)
    return serve_parsed(parser.parse_args(argv), config_type, build)


def serve_parsed(
    args: argparse.Namespace, config_type: type[ServiceConfig], build: Callable[[Any], Built]
) -> int:
    """Serve with flags already parsed (by `python -m services.<name>` or by `kmono serve <name>`)."""
    config = config_type.from_args(args)
    registrations, on_startup, on_shutdown = build(config)
    return run(config.server, registrations, on_startup=on_startup, on_shutdown=on_shutdown)


@dataclass(frozen=True)
class BasicServiceConfig:
    """A service that needs nothing beyond the server settings (yet)."""

    server: ServerConfig = field(default_factory=ServerConfig)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        ServerConfig.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BasicServiceConfig:
        return cls(server=ServerConfig.from_args(args))


@dataclass(frozen=True)
class ModelFoldersServiceConfig(BasicServiceConfig):
    """A service of trained model folders, the first the default version, scored by torch on CPU threads.

    A subclass names its environment prefix, its embedded model and what a folder is; no folder named means the
    embedded model (`__post_init__`, so flags, environment and direct construction agree)."""

    ENV_PREFIX: ClassVar[str] = "KMONO"
    """`KMONO_RANK` -> KMONO_RANK_MODELS, KMONO_RANK_TORCH_THREADS, and the --help group "rank"."""
    DEFAULT_MODEL: ClassVar[Path]
    """The embedded model, served when no folder is named."""
    FOLDER_HELP: ClassVar[str] = "a model folder"
    """What a folder is and how to make one, for --help."""

    models: tuple[Path, ...] = ()
    """The folders to serve; empty: the embedded `DEFAULT_MODEL`."""
    torch_threads: int = 0
    """CPU threads torch may use (0: torch's default)."""

    def __post_init__(self) -> None:
        if not self.models:
            object.__setattr__(self, "models", (self.DEFAULT_MODEL,))  # frozen: set once, here

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        group = parser.add_argument_group(cls.ENV_PREFIX.removeprefix("KMONO_").lower())
        group.add_argument(
            "--model",
            dest="models",
            action="append",
            type=Path,
            help=f"{cls.FOLDER_HELP}; repeat to serve several versions, the first is the default "
            f"(env {cls.ENV_PREFIX}_MODELS, comma-separated; default: the embedded model {cls.DEFAULT_MODEL})",
        )
        group.add_argument(
            "--torch-threads",
            type=non_negative_int,
            default=os.environ.get(f"{cls.ENV_PREFIX}_TORCH_THREADS", "0"),
            help=f"CPU threads for torch; 0: torch's default (env {cls.ENV_PREFIX}_TORCH_THREADS)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelFoldersServiceConfig:
        listed = os.environ.get(f"{cls.ENV_PREFIX}_MODELS", "").split(",")
        models = args.models or [Path(p) for p in listed if p]
        return cls(
            server=ServerConfig.from_args(args),
            models=tuple(models),
            torch_threads=args.torch_threads,
        )


@dataclass(frozen=True)
class StatefulServiceConfig(BasicServiceConfig):
    """A service with long-running operations: kept in an SQLite store under `data_dir`, at most
    `max_queued_jobs` waiting (RESOURCE_EXHAUSTED past it), each failed past `job_timeout_seconds`."""

    ENV_PREFIX: ClassVar[str] = "KMONO"
    """Prefix of the service's own environment variables (`KMONO_VIDEO` -> KMONO_VIDEO_MAX_QUEUED_JOBS)."""

    data_dir: Path = Path("var")
    max_queued_jobs: int = 16
    """QUEUED jobs beyond which a create answers RESOURCE_EXHAUSTED (with RetryInfo)."""
    job_timeout_seconds: float = 1800.0
    """Per-job deadline (from the moment a worker starts it); past it the job FAILS with DEADLINE_EXCEEDED."""
    media: MediaPolicy = field(default_factory=MediaPolicy)
    """Media references requests may name (--media-root / --allow-scheme); empty: inline data and artifacts only."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        env = os.environ.get
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=Path(env("KMONO_DATA_DIR", "var")),
            help="where operations and artifacts are kept across restarts (env KMONO_DATA_DIR; default: ./var)",
        )
        parser.add_argument(
            "--max-queued-jobs",
            type=positive_int,
            default=env(f"{cls.ENV_PREFIX}_MAX_QUEUED_JOBS", str(cls.max_queued_jobs)),
            help=f"queued jobs before a new one is refused with RESOURCE_EXHAUSTED "
            f"(env {cls.ENV_PREFIX}_MAX_QUEUED_JOBS; default: %(default)s)",
        )
        parser.add_argument(
            "--job-timeout",
            type=non_negative_float,
            default=env(f"{cls.ENV_PREFIX}_JOB_TIMEOUT", str(cls.job_timeout_seconds)),
            help=f"seconds a job may run before it fails with DEADLINE_EXCEEDED; 0: no limit "
            f"(env {cls.ENV_PREFIX}_JOB_TIMEOUT; default: %(default)s)",
        )
        add_media_arguments(parser, cls.ENV_PREFIX)

    @classmethod
    def common_settings(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The fields every stateful service reads from its flags (subclasses add their own)."""
        return dict(
            server=ServerConfig.from_args(args),
            data_dir=args.data_dir,
            max_queued_jobs=args.max_queued_jobs,
            job_timeout_seconds=args.job_timeout,
            media=media_policy_from_args(args),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StatefulServiceConfig:
        return cls(**cls.common_settings(args))

    def operations_db(self, service: str) -> Path:
        return self.data_dir / service / "operations.sqlite"
