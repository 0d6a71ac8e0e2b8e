"""The DialogueService with a scripted language model, as a process: what the reliability tests start, kill -9 and
restart (a reply of ~25 pieces, `--delay` seconds each, so a kill lands mid-reply).

    python -m services.dialogue.testing --delay 0.05 -- --port 50051 --data-dir var --max-concurrent-rpcs 2

Everything after `--` is the service's own flags (`kmono serve dialogue --help`); `--backend` is ignored.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from generation.dialogue.serving.engine import DialogueEngine
from generation.dialogue.serving.testing import echo_lm
from libs.serving.service import service_main
from services.dialogue import server
from services.dialogue.config import DialogueServiceConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per reply piece")
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]

    def load_engine(config: DialogueServiceConfig) -> DialogueEngine:
        return DialogueEngine.open(config.sessions_dir, config.settings, lm=echo_lm(args.delay))

    build = partial(server.build, load_engine=load_engine)
    return service_main(
        rest, prog="scripted-dialogue", description="", config_type=server.CONFIG_TYPE, build=build
    )


if __name__ == "__main__":
    sys.exit(main())
