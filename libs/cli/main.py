"""Root of the `kmono` command line.

Packages add subcommands through the `kmono.cli` entry-point group (see pyproject.toml): each entry is a
`register(subparsers)` function that adds its parser and sets `func` (a callable taking the parsed arguments and
returning an exit code). Discovery by entry point keeps libs/ free of imports of generation/, recsys/ and
services/, and lets a package plug in without editing this file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points

Registrar = Callable[[argparse._SubParsersAction], None]

ENTRY_POINT_GROUP = "kmono.cli"

DESCRIPTION = """\
kmono: gRPC model services for short video and live streaming.

Every subcommand has its own --help, e.g. `kmono serve --help`, `kmono serve video --help`.
"""


def discover_registrars() -> list[tuple[str, Registrar]]:
    """(name, register) for every installed `kmono.cli` entry point, sorted by name."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    return sorted(((ep.name, ep.load()) for ep in found), key=lambda item: item[0])


def build_parser(registrars: Iterable[tuple[str, Registrar]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmono", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging verbosity"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _, register in registrars if registrars is not None else discover_registrars():
        register(subparsers)
    return parser


def main(argv: list[str] | None = None, registrars: Iterable[tuple[str, Registrar]] | None = None) -> int:
    parser = build_parser(registrars)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"kmono {args.command}: error: {exc}", file=sys.stderr)
        return 2


def add_subcommand(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    examples: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows `summary` (or `description`) and then its `examples` verbatim.

    `summary` is an argparse help string ("%%" for a percent sign); argparse never %-formats a description, so
    the description made from it gets a plain "%"."""
    return commands.add_parser(
        name,
        help=summary,
        description=description or f"{summary[0].upper()}{summary[1:]}.".replace("%%", "%"),
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


class UsageError(Exception):
    """A user mistake a command reports as one line (exit code 2), never as a traceback."""


if __name__ == "__main__":
    sys.exit(main())
