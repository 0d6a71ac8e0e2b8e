"""What the service tests share: a service's config parsed from its own flags (as `kmono serve` would), and fake
engines that need no model (the service is what is tested). tests/reliability/fake_servers.py runs the same fakes
in real server processes."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from generation.mvideo.engine import TINY_SPEC, GeneratedVideo
from libs.media import MaskSequence


def service_config(server: ModuleType, data_dir: Path, *flags: str):
    """`server.CONFIG_TYPE` parsed from its flags: loopback, any free port, `data_dir`, one torch thread, `flags`."""
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)
    argv = ["--port", "0", "--host", "127.0.0.1", "--data-dir", str(data_dir), "--torch-threads", "1", *flags]
    return server.CONFIG_TYPE.from_args(parser.parse_args(argv))


def _log_run(path: str | None, key: str) -> None:
    """One fsynced line per run of a job, so a test can count runs across kills."""
    if path:
        with open(path, "a") as log:
            log.write(f"{key}\t{os.getpid()}\n")
            log.flush()
            os.fsync(log.fileno())


class FakeVideoEngine:
    """The tiny MVideo's spec; `delay` seconds per step; frames filled with the job's seed (the same job always
    gives the same bytes); each run logged to `runs_log` when given."""

    spec = TINY_SPEC
    attention = "sdpa"

    def __init__(self, delay: float = 0.0, runs_log: str | None = None) -> None:
        self.delay, self.runs_log = delay, runs_log

    def generate(self, job, on_step, on_stage=lambda stage: None):
        _log_run(self.runs_log, job.prompt)
        on_stage("denoising")
        for step in range(job.num_inference_steps):
            time.sleep(self.delay)
            on_step(step + 1, job.num_inference_steps, None)
        frames = np.full((job.num_frames, job.height, job.width, 3), (job.seed or 0) % 251, np.uint8)
        return GeneratedVideo(frames, job.masks)


class FakeMaskEngine:
    """`frames` frames of 8 x 8, one object moving down a row per frame, `delay` seconds each."""

    def __init__(self, delay: float = 0.0, runs_log: str | None = None, frames: int = 8) -> None:
        self.delay, self.runs_log, self.frames = delay, runs_log, frames

    def extract(self, job, on_frame):
        _log_run(self.runs_log, job.query)
        id_maps = np.zeros((self.frames, 8, 8), np.int32)
        for t in range(self.frames):
            time.sleep(self.delay)
            id_maps[t, t % 8, :] = 1
            on_frame(t + 1, self.frames, 1)
        return MaskSequence.from_id_maps(id_maps, None, 4.0)
