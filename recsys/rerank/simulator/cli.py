"""The simulator's command line: print the calibration, the mean % of the brute-force optimum of score-sort,
random and structure-aware pages per layout (the table in `user.py`).

    python -m recsys.rerank.simulator [--requests 1000] [--seed 0] [--options default|random] [--no-caps]
"""

from __future__ import annotations

import argparse

from recsys.rerank.simulator.calibration import calibration_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m recsys.rerank.simulator", description="Print the simulator's calibration table."
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", choices=("default", "random"), default="default")
    parser.add_argument("--no-caps", action="store_true", help="no request carries an author cap")
    args = parser.parse_args(argv)
    report = calibration_report(
        args.requests, seed=args.seed, options=args.options, author_caps=not args.no_caps
    )
    print(f"{args.requests} requests per layout, n = 8, m = 4, seed {args.seed}, options {args.options}")
    print(f"{'layout':8} {'optimum':>8} {'sort %':>8} {'random %':>9} {'aware %':>8} {'opt != sort %':>14}")
    for layout, row in report.items():
        print(
            f"{layout:8} {row['optimum']:8.3f} {row['score_sort']:8.1f} {row['random']:9.1f} "
            f"{row['structure_aware']:8.1f} {row['optimum_is_not_sort']:14.1f}"
        )
