"""The video and masks services as an operator runs them, with fake engines that need no torch (so a restart takes
a second, not ten): `delay` seconds per denoising step or per extracted frame, outputs derived from the job alone
(the same job always gives the same bytes). Every run of a job appends a line to `--runs-log` (fsynced), so a
test can count how often each job ran across kills.

    python tests/reliability/fake_servers.py video --delay 0.03 --runs-log runs.txt -- --port 50051 --data-dir var

Everything after `--` is the service's own flags (`kmono serve video --help`, `kmono serve masks --help`).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from libs.serving.service import service_main
from tests.fakes import FakeMaskEngine, FakeVideoEngine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=("video", "masks"))
    parser.add_argument("--delay", type=float, default=0.03)
    parser.add_argument("--runs-log", default=None)
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    if args.service == "video":
        from services.video import server

        engine = FakeVideoEngine(args.delay, args.runs_log)
        build = partial(server.build, load_engines=lambda: {"mvideo": engine})
    else:
        from services.masks import server

        mask_engine = FakeMaskEngine(args.delay, args.runs_log)
        build = partial(server.build, load_engine=lambda: mask_engine)
    return service_main(
        rest, prog=f"fake-{args.service}", description="", config_type=server.CONFIG_TYPE, build=build
    )


if __name__ == "__main__":
    sys.exit(main())
