"""Server configuration shared by every kmono gRPC service.

One frozen dataclass, filled from command-line flags whose defaults come from `KMONO_<FIELD>` environment
variables, so the same binary runs unchanged on a laptop (flags), in compose and in Kubernetes (env).
Service-specific settings (model paths, worker counts) live in each service's own config and never here.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "KMONO_"
_NONE_WORDS = ("", "none", "off")
# gRPC stores message limits in a C int.
_MAX_GRPC_INT = 2**31 - 1


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _parse_float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Accept "", "none" or "off" for the fields whose off-state is None."""

    def parse_optional(raw: str) -> Any:
        return None if raw.strip().lower() in _NONE_WORDS else parse(raw)

    return parse_optional


def _parse_str(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class ServerConfig:
    """How a kmono gRPC server listens, limits and shuts down."""

    host: str = dataclasses.field(
        default="0.0.0.0",
        metadata={"help": 'Interface to listen on; "0.0.0.0" for containers, "127.0.0.1" for tests.'},
    )
    port: int = dataclasses.field(
        default=50051,
        metadata={"help": "gRPC port; 0 lets the OS pick a free one (the real one is `KmonoServer.port`)."},
    )
    metrics_port: int | None = dataclasses.field(
        default=None,
        metadata={"help": "Prometheus HTTP port; None turns the endpoint off, 0 lets the OS pick."},
    )
    max_concurrent_rpcs: int = dataclasses.field(
        default=100,
        metadata={
            "help": "In-flight RPCs past which new ones get RESOURCE_EXHAUSTED (health and reflection are exempt)."
        },
    )
    max_message_bytes: int = dataclasses.field(
        default=64 * 1024 * 1024,
        metadata={"help": "Send and receive limit per message; large media moves as chunks or URIs."},
    )
    grace_seconds: float = dataclasses.field(
        default=10.0,
        metadata={
            "help": "Time that in-flight RPCs and shutdown hooks get after SIGTERM; keep it below the pod's grace period."
        },
    )
    default_deadline_seconds: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Deadline applied to RPCs whose client set none; None means such RPCs may run unbounded."
        },
    )
    log_level: str = dataclasses.field(
        default="INFO",
        metadata={"help": "Root log level when the process is started through `libs.serving.run`."},
    )

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid ServerConfig: " + "; ".join(problems))

    def _problems(self):
        if not self.host:
            yield "host must not be empty"
        if not 0 <= self.port <= 65535:
            yield f"port must be in 0..65535, got {self.port}"
        if self.metrics_port is not None:
            if not 0 <= self.metrics_port <= 65535:
                yield f"metrics_port must be in 0..65535 or None, got {self.metrics_port}"
            elif self.metrics_port != 0 and self.metrics_port == self.port:
                yield f"metrics_port and port must differ, both are {self.port}"
        if self.max_concurrent_rpcs < 1:
            yield f"max_concurrent_rpcs must be >= 1, got {self.max_concurrent_rpcs}"
        if not 1 <= self.max_message_bytes <= _MAX_GRPC_INT:
            yield f"max_message_bytes must be in 1..{_MAX_GRPC_INT}, got {self.max_message_bytes}"
        if self.grace_seconds < 0:
            yield f"grace_seconds must be >= 0, got {self.grace_seconds}"
        if self.default_deadline_seconds is not None and self.default_deadline_seconds <= 0:
            yield f"default_deadline_seconds must be > 0 or None, got {self.default_deadline_seconds}"
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            yield f"log_level must be a logging level name (DEBUG, INFO, ...), got {self.log_level!r}"

    @property
    def address(self) -> str:
        """The gRPC bind address, with IPv6 hosts in brackets."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    # ----- construction from the environment and flags -----

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Fields from `KMONO_<FIELD>` variables; unset ones keep the dataclass default."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            name = env_name(field.name)
            if name in environ:
                try:
                    values[field.name] = _PARSERS[field.name](environ[name])
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
        """Add one `--field-name` flag per field; each default is `KMONO_<FIELD>` or the dataclass default.

        A bad environment value is reported by argparse at parse time, naming the variable.
        """
        environ = os.environ if environ is None else environ
        group = parser.add_argument_group("server")
        for field in dataclasses.fields(cls):
            name = env_name(field.name)
            default = environ.get(name, field.default)
            group.add_argument(
                "--" + field.name.replace("_", "-"),
                dest=field.name,
                type=_flag_type(field.name, name),
                default=default,
                metavar=field.name.upper(),
                help=f"{field.metadata['help']} (env {name}; default: %(default)s)",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerConfig:
        """The config from a namespace parsed with a parser prepared by `add_arguments`."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})


def env_name(field_name: str) -> str:
    """`port` -> `KMONO_PORT`."""
    return ENV_PREFIX + field_name.upper()


def _flag_type(field_name: str, env: str) -> Callable[[str], Any]:
    parse = _PARSERS[field_name]

    def flag_type(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (flag or {env})") from None

    flag_type.__name__ = field_name  # argparse names the type in some messages
    return flag_type


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": _parse_str,
    "port": _parse_int,
    "metrics_port": _optional(_parse_int),
    "max_concurrent_rpcs": _parse_int,
    "max_message_bytes": _parse_int,
    "grace_seconds": _parse_float,
    "default_deadline_seconds": _optional(_parse_float),
    "log_level": _parse_str,
}
