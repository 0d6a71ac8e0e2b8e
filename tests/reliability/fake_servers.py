"""The video and masks services as an operator runs them, with fake engines that need no torch (so a restart takes
a second, not ten): `delay` seconds per denoising step or per extracted frame, outputs derived from the job alone
(the same job always gives the same bytes). Every run of a job appends a line to `--runs-log` (fsynced), so a
test can count how often each job ran across kills.

    python tests/reliability/fake_servers.py video --delay 0.03 --runs-log runs.txt -- --port 50051 --data-dir var

Everything after `--` is the service's own flags (`kmono serve video --help`, `kmono serve masks --help`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import numpy as np

from generation.mvideo.engine import TINY_SPEC, GeneratedVideo
from libs.media import MaskSequence
from libs.serving.service import service_main


def _log_run(path: str | None, key: str) -> None:
    if path:
        with open(path, "a") as log:
            log.write(f"{key}\t{os.getpid()}\n")
            log.flush()
            os.fsync(log.fileno())


class FakeVideoEngine:
    spec = TINY_SPEC
    attention = "sdpa"

    def __init__(self, delay: float, runs_log: str | None) -> None:
        self.delay, self.runs_log = delay, runs_log

    def generate(self, job, on_step, on_stage=lambda stage: None):
        _log_run(self.runs_log, job.prompt)
        on_stage("denoising")
        for step in range(job.num_inference_steps):
            time.sleep(self.delay)
            on_step(step + 1, job.num_inference_steps, None)
        frames = np.full((job.num_frames, job.height, job.width, 3), job.seed % 251, np.uint8)
        return GeneratedVideo(frames, job.masks)


class FakeMaskEngine:
    def __init__(self, delay: float, runs_log: str | None, frames: int = 8) -> None:
        self.delay, self.runs_log, self.frames = delay, runs_log, frames

    def extract(self, job, on_frame):
        _log_run(self.runs_log, job.query)
        id_maps = np.zeros((self.frames, 8, 8), np.int32)
        for t in range(self.frames):
            time.sleep(self.delay)
            id_maps[t, t % 8, :] = 1
            on_frame(t + 1, self.frames, 1)
        return MaskSequence.from_id_maps(id_maps, None, 4.0)


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
