"""Where `RankingEngine.score` spends its time, stage by stage, for the full MMBee and for its backbone alone,
and what the request program (model folder format 3) saves against the row-by-row scorer program (format 2).

    .venv/bin/python benchmarks/mmbee_breakdown.py                  # about a minute on a 2-core CPU
    .venv/bin/python benchmarks/mmbee_breakdown.py --requests 400 --candidates 500

Models: as in `benchmarks/mmbee_scoring.py` (a): `ModelOptions()` and `ModelOptions(use_mfq=False,
use_gie=False)`, trained on the `--preset` world for `--train-steps` steps (the weights do not matter for speed)
and saved with `recsys.mmbee.pipeline.save_model_folder`, in a temporary directory. Requests: random known
users, `--candidates` distinct streams each (the live streams of the snapshot, then broadcasts that send their
segment in the request), the same list for every measurement.

Stages (CPU time of this thread, `time.thread_time`, so that other processes on a shared machine count less;
p50 over requests, ms): the request checks (`check_request`), the featurizer (`featurizer.batch`), the h_m cache
keys (`segment_keys`: digests of the overridden segments), the h_m cache lookup (`CachedScorer.rows`: h_m and
the candidate's own GIE expansions), the scoring program, and the ranking; "engine.score" is the whole call, timed apart. The models alternate per request (ABBA).
Beneath: the scoring program alone on the same batches, the request program against the scorer program (what a
format-2 folder runs), with the largest score difference between them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.mmbee_scoring import build_folders, make_requests

STAGES = ("check_request", "featurizer", "segment keys", "h_m cache", "program", "ranking", "engine.score")


def stage_times(ranker, request) -> dict[str, float]:
    """ms of CPU per stage of one `LoadedRanker.score(request)`, the stages run one by one."""
    from recsys.mmbee.engine import segment_keys
    from recsys.mmbee.requests import check_request

    clock = time.thread_time
    times = [clock()]
    check_request(request, ranker.spec)
    times.append(clock())
    batch = ranker.featurizer.batch(request)
    times.append(clock())
    cached = ranker.scorer
    keys = segment_keys(request, batch) if cached.cache is not None else None
    times.append(clock())
    rows = cached.rows(batch, keys) if cached.cache is not None else None  # h_m (+ candidate rows)
    times.append(clock())
    scorer = cached.scorer
    if scorer.candidate is not None:
        scores = scorer.score_request(batch, candidate_rows=rows)
    else:
        scores = scorer(batch, rows)
    times.append(clock())
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    [(request.candidates[i].stream_id, float(scores[i])) for i in order]
    times.append(clock())
    return {stage: (end - start) * 1e3 for stage, start, end in zip(STAGES, times, times[1:], strict=False)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="default", help="synthetic world preset (default: default)")
    parser.add_argument("--candidates", type=int, default=200, help="candidates per request (default: 200)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests (default: 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first (default: 20)")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps per model (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the requests")
    args = parser.parse_args()

    import logging

    import torch

    from recsys.mmbee.engine import RankingEngine, segment_keys
    from recsys.mmbee.export.scorer import Scorer

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="mmbee-breakdown-") as tmp:
        folders = build_folders(args.preset, args.train_steps, Path(tmp))
        engines = [RankingEngine.load([folder]).default for folder in folders.values()]
        rankers = dict(zip(("MMBee", "backbone"), engines, strict=True))  # short column names
        requests = make_requests(rankers["MMBee"], args.warmup + args.requests, args.candidates, args.seed)
        times: dict[tuple[str, str], list[float]] = {}
        for i, request in enumerate(requests):
            for name in list(rankers) if i % 2 == 0 else list(rankers)[::-1]:
                ranker = rankers[name]
                stages = stage_times(ranker, request)
                start = time.thread_time()
                ranker.score(request)
                stages["engine.score"] = (time.thread_time() - start) * 1e3
                if i >= args.warmup:
                    for stage, value in stages.items():
                        times.setdefault((name, stage), []).append(value)
        print(f"torch {torch.__version__}, 1 thread; {args.requests} requests x {args.candidates} candidates, "
              f"'{args.preset}' world; CPU ms of this thread, p50 (p99)")  # fmt: skip
        print(f"  {'stage':<16}" + "".join(f"{name:>22}" for name in rankers) + f"{'difference':>13}")
        for stage in STAGES:
            cells = [np.percentile(times[(name, stage)], [50, 99]) for name in rankers]
            print(f"  {stage:<16}" + "".join(f"{p50:>12.3f} ({p99:6.3f})" for p50, p99 in cells)
                  + f"{cells[0][0] - cells[1][0]:>+13.3f}")  # fmt: skip
        full, base = (np.percentile(times[(name, "engine.score")], 50) for name in rankers)
        print(f"  engine.score MMBee / backbone = {full / base:.3f}x (+{full - base:.2f} ms at p50)")

        print("request program (format 3) against the scorer program row by row (format 2), same batches:")
        for name, ranker in rankers.items():
            scorer = ranker.scorer.scorer
            row_by_row = Scorer(scorer.scorer, scorer.fusion)  # the same folder without its request program
            pairs, worst = {"request program": [], "scorer program": []}, 0.0
            for i, request in enumerate(requests):
                batch = ranker.featurizer.batch(request)
                rows = ranker.scorer.rows(batch, segment_keys(request, batch)) if scorer.takes_h_m else None
                h_m = None if rows is None else rows[:, : scorer.h_m_dim]
                calls = {
                    "request program": partial(scorer.score_request, batch, candidate_rows=rows),
                    "scorer program": partial(row_by_row, batch, h_m),
                }
                results = {}
                for label in list(calls)[:: 1 - 2 * (i % 2)]:
                    start = time.thread_time()
                    results[label] = calls[label]()
                    if i >= args.warmup:
                        pairs[label].append((time.thread_time() - start) * 1e3)
                worst = max(
                    worst, float(np.abs(results["request program"] - results["scorer program"]).max())
                )
            fast, slow = (np.percentile(pairs[label], 50) for label in pairs)
            print(f"  {name:<10} request program {fast:.3f} ms, scorer program {slow:.3f} ms ({slow / fast:.2f}x); "
                  f"largest score difference {worst:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
