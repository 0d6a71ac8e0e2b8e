"""The `kmono` command: one root parser that every package extends with its own subcommands."""

from libs.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
