"""Per-request decoding latency of the rerankers: AR teacher against NAR student (issue 13's goal: NAR >= 5x
faster at n = 50 candidates, m = 10 slots), and K Gumbel-max samples at once against K sequential samples.

    OMP_NUM_THREADS=1 python benchmarks/rerank_decoding.py [--candidates 50] [--slots 10] [--samples 64]
                                                          [--author-cap 2] [--threads 1] [--repeats 50]

The embedded models (`--model`, default `recsys/rerank/defaults/model`: d 64, 4 heads, teacher and student of
two blocks each) and one random request (`recsys.rerank.models.testing.random_page_batch`, authors from a pool
of n/2, so the cap binds), batch of one, under `torch.inference_mode`; process CPU time, timed in round-robin
after warm-up, median of `--repeats`. Prints each decoder's median milliseconds and its ratio to the named
baseline measured in the same run: "AR greedy" for the single-page decoders, "sequential" for the samplers.

Measured on this project's 2-core CPU (torch 2.13, float32, 1 thread, median of 60), n = 50, m = 10, K = 64,
cap 2:

| decoder                      | ms    | x AR greedy |
|------------------------------|-------|-------------|
| AR greedy                    | 4.17  | 1.00        |
| NAR greedy                   | 1.13  | 3.70        |
| NAR assignment               | 1.07  | 3.90        |
| NAR contrastive              | 1.19  | 3.52        |
| score-and-sort greedy        | 0.30  | 13.9        |
| NAR greedy, a one-block student (`student_layers=1`, another training run) | 0.85 | 4.94 |

| 64 pages per request         | sequential ms | Gumbel-max ms | x sequential |
|------------------------------|---------------|---------------|--------------|
| NAR student                  | 22.8          | 2.97          | 7.7          |
| AR teacher                   | 227           | 38.0          | 6.0          |

So the issue's goal (NAR >= 5x faster than AR per request) is MISSED: 3.7x with the embedded student, 4.9x
with a one-block one. The cost is structural at batch one on a CPU, where every op costs its dispatch: AR =
encoder + m decoder steps (about 0.45 + 10 x 0.3 ms), NAR = encoder + one slot stack + the m-step masked argmax
loop (about 0.45 + 0.3 + 0.2 ms). NAR's floor is the encoder both share, so the ratio grows with m and with a
cheaper encoder, not with a faster NAR decoder alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import interleaved_median_ms
from recsys.rerank.defaults import DEFAULT_MODEL_PATH
from recsys.rerank.models import (
    ScoreAndSort,
    assignment,
    contrastive,
    greedy,
    load_model_folder,
    sample,
    sample_sequentially,
)
from recsys.rerank.models.testing import random_page_batch

GOAL = 5.0
"""Issue 13: NAR greedy at least this many times faster than AR greedy per request."""


def print_table(title: str, results: dict[str, float], baseline: str) -> None:
    print(f"\n{title} (baseline: {baseline})")
    for name, ms in results.items():
        print(f"  {name:28s} {ms:8.2f} ms   baseline / this = {results[baseline] / ms:6.2f}x")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--samples", type=int, default=64, help="K pages per request for the samplers")
    parser.add_argument("--author-cap", type=int, default=2, help="per-author cap of the request (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_PATH,
        help="a trained folder: its teacher and student are timed (default: the embedded model)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    models = load_model_folder(args.model)
    config, teacher, student = models.config, models.teacher, models.student
    batch = random_page_batch(
        1, args.candidates, args.slots, torch.Generator().manual_seed(args.seed), author_cap=args.author_cap
    )
    print(
        f"n={args.candidates} m={args.slots} K={args.samples} cap={args.author_cap} threads={args.threads} "
        f"d={config.d_model} heads={config.heads} teacher layers={config.layers} "
        f"student layers={config.student.layers} ({args.model})"
    )

    single = interleaved_median_ms(
        {
            "AR greedy": lambda: greedy(teacher, batch),
            "NAR greedy": lambda: greedy(student, batch),
            "NAR assignment": lambda: assignment(student, batch),
            "NAR contrastive": lambda: contrastive(student, batch),
            "score-and-sort greedy": lambda: greedy(ScoreAndSort(), batch),
        },
        args.repeats,
    )
    print_table("one page per request", single, "AR greedy")
    ratio = single["AR greedy"] / single["NAR greedy"]
    print(
        f"  NAR greedy is {ratio:.1f}x faster than AR greedy: goal >= {GOAL:.0f}x {'holds' if ratio >= GOAL else 'MISSED'}"
    )

    def sampler(function, policy):
        return lambda: function(policy, batch, args.samples, torch.Generator().manual_seed(args.seed))

    samplers = {}
    for label, policy in (("NAR", student), ("AR", teacher)):
        rounds = max(3, args.repeats // 5)  # the sequential AR baseline is slow; fewer repeats suffice
        timed = interleaved_median_ms(
            {
                f"{label} sequential": sampler(sample_sequentially, policy),
                f"{label} Gumbel-max": sampler(sample, policy),
            },
            rounds,
        )
        print_table(f"{args.samples} sampled pages per request, {label}", timed, f"{label} sequential")
        samplers.update(timed)
    return {**single, **samplers}


if __name__ == "__main__":
    main()
