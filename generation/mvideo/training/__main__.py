"""`python -m generation.mvideo.training` / `accelerate launch -m generation.mvideo.training`: the flags of
`kmono mvideo train` (see generation/mvideo/cli.py), for launchers that start a module on every process."""

import argparse
import logging
import sys

from generation.mvideo.cli import add_train_arguments, run_train
from libs.cli.main import UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generation.mvideo.training", description=__doc__)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_train(args)
    except UsageError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
