"""The echo service as a process (`python -m libs.serving.testing.echo_server`), for signal tests.

Configured by flags or KMONO_* variables like every service.
"""

from __future__ import annotations

import argparse
import sys

from libs.serving.config import ServerConfig
from libs.serving.runner import run
from libs.serving.testing.echo import echo_registration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    ServerConfig.add_arguments(parser)
    config = ServerConfig.from_args(parser.parse_args(argv))
    return run(config, [echo_registration()])


if __name__ == "__main__":
    sys.exit(main())
