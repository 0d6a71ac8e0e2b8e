"""`kmono serve <service>`: run one gRPC service in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

from services import SERVICE_NAMES
from services.skeleton import serve_parsed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run one gRPC service (video, masks, rank, rerank, dialogue)",
        description="Run one gRPC service until SIGTERM/Ctrl-C (then it turns NOT_SERVING and drains). "
        "Flags default from KMONO_* environment variables.",
    )
    services = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name in SERVICE_NAMES:
        server = importlib.import_module(f"services.{name}.server")
        summary = (server.__doc__ or name).splitlines()[0]
        service_parser = services.add_parser(
            name,
            help=summary,
            description=server.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        server.CONFIG_TYPE.add_arguments(service_parser)
        service_parser.set_defaults(func=_runner(server))


def _runner(server: ModuleType):
    def run(args: argparse.Namespace) -> int:
        return serve_parsed(args, server.CONFIG_TYPE, server.build)

    return run
