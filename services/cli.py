"""`kmono serve <service>`: run one gRPC service in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import importlib

from libs.serving.service import serve_parsed
from services import SERVICE_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run one gRPC service (video, masks, rank, rerank, dialogue)",
        description="Run one gRPC service until SIGTERM/Ctrl-C (then it turns NOT_SERVING and drains). "
        "Flags default from KMONO_* environment variables.",
    )
    services = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name in SERVICE_NAMES:
        # Only the light package docstring and config are imported here; the server (and its engine's torch
        # imports) loads when the command runs, so `kmono --help` stays fast.
        package = importlib.import_module(f"services.{name}")
        config = importlib.import_module(f"services.{name}.config")
        service_parser = services.add_parser(
            name,
            help=(package.__doc__ or name).splitlines()[0],
            description=f"{package.__doc__}\n\nAlso runs as `python -m services.{name}`.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        config.CONFIG_TYPE.add_arguments(service_parser)
        service_parser.set_defaults(func=_runner(name, config.CONFIG_TYPE))


def _runner(name: str, config_type: type):
    def run(args: argparse.Namespace) -> int:
        server = importlib.import_module(f"services.{name}.server")
        return serve_parsed(args, config_type, server.build)

    return run
