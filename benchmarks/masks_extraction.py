"""Mask extraction on tiny random models: key-frame detection against detecting every frame, and memory
on a long video against a short one.

    .venv/bin/python benchmarks/masks_extraction.py            # about 1.5 minutes on 2 idle CPU cores

1. Throughput: `MaskExtractor.extract` on a synthetic clip (a square moving over a textured background)
   with GroundingDINO on key frames only (`--redetect-every`, Grounded-SAM-2's step of 20) and SAM2
   propagation in between, against the baseline of GroundingDINO + matching on every frame
   (`redetect_every=1`). Prints frames/s of both and `ratio_keyframe_vs_every_frame`.
2. Memory: the same extraction streamed from MP4 files of `--long-frames` (1,000) and `--short-frames` (100)
   frames, each in a fresh subprocess after a warm-up run. Prints the peak resident memory during
   extraction (whole process: torch, models, buffers; sampled from /proc) and how far it rose above the
   pre-extraction level, with `peak_mem_ratio_1000_vs_100` = ratio of the whole-process peaks; with
   `--tracemalloc` also the peak of Python/numpy allocations (frames, masks, the RLE output; slower).
   Streaming keeps memory nearly flat: what grows with length is the compact RLE output (`output_kb`)
   and, with these random models, the number of objects found.

The tiny models are random: the masks mean nothing, only the cost does. Torch runs on `--threads` threads
(default 1: tiny models are faster on one thread, and far faster when other jobs share the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from generation.masks import MaskExtractor
from libs.media import write_video

QUERY = "a red square."


def synthetic_clip(num_frames: int, size: int, seed: int = 0) -> np.ndarray:
    """(T, size, size, 3) uint8: a red square moving over a fixed random texture."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 96, (size, size, 3), dtype=np.uint8)
    clip = np.repeat(background[None], num_frames, axis=0)
    side = max(4, size // 4)
    for t in range(num_frames):
        x = int((size - side) * (0.5 + 0.5 * np.sin(t / 15)))
        y = int((size - side) * (0.5 + 0.5 * np.cos(t / 23)))
        clip[t, y : y + side, x : x + side] = (220, 30, 30)
    return clip


def extract_kwargs(args: argparse.Namespace, redetect_every: int | None = None) -> dict[str, float | int]:
    return {
        "redetect_every": redetect_every or args.redetect_every,
        "window": args.window,
        "box_threshold": args.box_threshold,
    }


def frames_per_second(extractor: MaskExtractor, clip: np.ndarray, kwargs: dict) -> tuple[float, int]:
    """(frames/s, objects found) of one extraction of `clip`."""
    start = time.perf_counter()
    seq = extractor.extract(clip, QUERY, **kwargs)
    return len(clip) / (time.perf_counter() - start), len(seq.objects)


class RssSampler:
    """Peak resident set size of this process, sampled every few milliseconds from /proc (Linux)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def measure_memory(path: str, args: argparse.Namespace) -> dict[str, float]:
    """Run in a fresh process: warm up on a short clip, then extract `path` while sampling memory."""
    torch.set_num_threads(args.threads)
    extractor = MaskExtractor.tiny(seed=args.seed)
    extractor.extract(synthetic_clip(args.window + 2, args.size), QUERY, **extract_kwargs(args))
    sampler = RssSampler()
    baseline = sampler.rss()
    if args.tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    with sampler:
        seq = extractor.extract(path, QUERY, **extract_kwargs(args))
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else float("nan")
    tracemalloc.stop()
    return {
        "frames": seq.num_frames,
        "objects": len(seq.objects),
        "seconds": seconds,
        "peak_rss_mb": sampler.peak / 2**20,
        "rss_growth_mb": (sampler.peak - baseline) / 2**20,
        "traced_peak_mb": traced_peak / 2**20,
        "output_kb": seq.nbytes / 1024,
    }


def run_child(path: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--child", path]
    for name in ("size", "redetect_every", "window", "box_threshold", "threads", "seed"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.tracemalloc:
        command.append("--tracemalloc")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60, help="frames of the throughput clip (default 60)")
    parser.add_argument(
        "--short-frames", type=int, default=100, help="frames of the short memory video (default 100)"
    )
    parser.add_argument(
        "--long-frames", type=int, default=1000, help="frames of the long memory video (default 1000)"
    )
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels (default 64)")
    parser.add_argument("--redetect-every", type=int, default=20, help="key-frame interval (default 20)")
    parser.add_argument("--window", type=int, default=100, help="frames per SAM2 session (default 100)")
    parser.add_argument(
        "--box-threshold",
        type=float,
        default=0.9999,
        help="GroundingDINO box threshold (default 0.9999: the random tiny detector scores most of its 10 "
        "queries high; this keeps 1-2 boxes per key frame)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny models (default 0)")
    parser.add_argument("--skip-memory", action="store_true", help="only measure throughput")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python/numpy allocations (slower)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure_memory(args.child, args)))
        return

    torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"tiny GroundingDINO + SAM2, {args.size}x{args.size} frames, torch threads={args.threads}, "
        f"{os.cpu_count()} cores, load average {load}"
    )
    extractor = MaskExtractor.tiny(seed=args.seed)
    clip = synthetic_clip(args.frames, args.size)
    frames_per_second(extractor, clip[:8], extract_kwargs(args))  # warm-up
    keyframe, keyframe_objects = frames_per_second(extractor, clip, extract_kwargs(args))
    every, every_objects = frames_per_second(extractor, clip, extract_kwargs(args, redetect_every=1))
    print(f"frames={args.frames} redetect_every={args.redetect_every} box_threshold={args.box_threshold}")
    print(f"keyframe_fps={keyframe:.1f} objects={keyframe_objects}")
    print(f"every_frame_fps={every:.1f} objects={every_objects}")
    print(f"ratio_keyframe_vs_every_frame={keyframe / every:.2f}")
    if args.skip_memory:
        return

    with tempfile.TemporaryDirectory(prefix="masks-bench-") as tmp:
        results = {}
        for n in (args.short_frames, args.long_frames):
            path = str(Path(tmp) / f"clip{n}.mp4")
            write_video(path, (frame for frame in synthetic_clip(n, args.size)), fps=25)
            results[n] = run_child(path, args)
    short, long = results[args.short_frames], results[args.long_frames]
    for n, r in results.items():
        traced = f" traced_peak_mb={r['traced_peak_mb']:.2f}" if args.tracemalloc else ""
        print(
            f"frames={n} seconds={r['seconds']:.1f} fps={n / r['seconds']:.1f} objects={r['objects']} "
            f"peak_rss_mb={r['peak_rss_mb']:.1f} rss_growth_mb={r['rss_growth_mb']:.1f}{traced} "
            f"output_kb={r['output_kb']:.1f}"
        )
    tag = f"{args.long_frames}_vs_{args.short_frames}"
    print(f"peak_mem_ratio_{tag}={long['peak_rss_mb'] / short['peak_rss_mb']:.3f}")
    print(f"rss_growth_mb_diff_{tag}={long['rss_growth_mb'] - short['rss_growth_mb']:.1f}")
    if args.tracemalloc:
        print(f"traced_peak_ratio_{tag}={long['traced_peak_mb'] / short['traced_peak_mb']:.2f}")


if __name__ == "__main__":
    main()
