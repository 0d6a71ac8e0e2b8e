"""Peak memory of writing the synthetic live-streaming world to Parquet (`recsys.data.world.write_world`, one day
in memory at a time) as the world grows in days, against `generate_world` (the whole world in memory).

    .venv/bin/python benchmarks/mmbee_world.py                       # about 20 s on a 2-core CPU
    .venv/bin/python benchmarks/mmbee_world.py --days 4 8 16 32 64 --scale 8

What is measured: the `--preset` world (default: `default`, about 10k impressions a day) with `days` set to
each of `--days`, at a fixed size per day: `--scale` (default 4, about 45k impressions a day) multiplies its
users and streamers, which makes every day bigger but not the number of days. Every (function, days) pair runs in a fresh Python process, so one run's
heap never inflates the next: the child imports numpy, pyarrow, tqdm and `recsys.data.world`, writes one tiny
Parquet file (the writer's one-time setup), reads its peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, the floor), runs the function once and reads the peak again. Columns:

- impressions: rows of the world;
- seconds: wall time of the call alone (imports excluded);
- peak MB: the process's peak RSS (what the operating system had to give it);
- above floor MB: peak minus the import floor (the memory the call itself needed).

The last rows give, per function, the ratio of peak RSS (and of the part above the floor) between the largest
and the smallest world: `generate_world` grows with the days (it holds every day, then concatenates them),
`write_world` should stay about flat (one day at a time). RSS includes shared libraries and allocator slack;
only numbers of the same run compare. The temporary Parquet folders are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUNCTIONS = ("generate_world", "write_world")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from dataclasses import replace

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tqdm  # noqa: F401 - write_world's progress bar: part of the floor for both functions

    from recsys.data.world import WORLD_PRESETS, generate_world, write_world

    args.child_out.mkdir(parents=True)
    pq.write_table(
        pa.table({"x": np.arange(8)}), args.child_out / "warm-up.parquet"
    )  # Parquet's one-time setup

    base = WORLD_PRESETS[args.preset]
    config = replace(
        base,
        days=args.child_days,
        num_users=base.num_users * args.scale,
        num_authors=base.num_authors * args.scale,
    )
    floor = peak_mb()
    start = time.perf_counter()
    if args.child == "generate_world":
        world = generate_world(config)
        impressions = len(world.impressions["user"])
    else:
        out = write_world(config, args.child_out, progress=False)
        impressions = json.loads((out / "world.json").read_text())["summary"]["impressions"]
    seconds = time.perf_counter() - start
    print(json.dumps({"impressions": impressions, "seconds": seconds, "floor": floor, "peak": peak_mb()}))


def measure(args: argparse.Namespace, function: str, days: int, tmp: Path) -> dict:
    out = tmp / f"world-{days}"
    command = [
        sys.executable, __file__, "--child", function, "--child-days", str(days), "--child-out", str(out),
        "--preset", args.preset, "--scale", str(args.scale),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{function} with {days} days failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="default", help="synthetic world preset (default: default)")
    parser.add_argument(
        "--days", type=int, nargs="+", default=[4, 8, 16, 32], help="world lengths (default: 4 8 16 32)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=4,
        help="multiply the preset's users and streamers: a bigger day (default 4)",
    )
    parser.add_argument("--child", choices=FUNCTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--child-days", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    days = sorted(set(args.days))
    start = time.perf_counter()
    print(f"world: preset '{args.preset}' x{args.scale} users/streamers, days {days}; one fresh process each")
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="mmbee-world-bench-") as tmp:
        for n in days:  # the two functions interleaved, so load drift hits both
            for function in FUNCTIONS:
                results[function, n] = measure(args, function, n, Path(tmp))

    print()
    print(
        f"{'function':<16} {'days':>5} {'impressions':>12} {'seconds':>8} {'peak MB':>9} {'above floor MB':>15}"
    )
    for function in FUNCTIONS:
        for n in days:
            r = results[function, n]
            print(
                f"{function:<16} {n:5d} {r['impressions']:12,d} {r['seconds']:8.2f} {r['peak']:9.1f} "
                f"{r['peak'] - r['floor']:15.1f}"
            )
    print()
    print(f"peak memory, {days[-1]} days / {days[0]} days ({days[-1] // days[0]}x the impressions, about):")
    for function in FUNCTIONS:
        small, large = results[function, days[0]], results[function, days[-1]]
        above = (large["peak"] - large["floor"]) / max(small["peak"] - small["floor"], 1e-9)
        label = "(baseline, all in memory)" if function == "generate_world" else "(one day at a time)"
        print(
            f"  {function:<16} {label:<26} peak x{large['peak'] / small['peak']:.2f}, above floor x{above:.2f}"
        )
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
