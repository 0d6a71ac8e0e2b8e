"""Per-request decoding latency of the rerankers: AR teacher against NAR student (issue 13's goal: NAR >= 5x
faster at n = 50 candidates, m = 10 slots), and K Gumbel-max samples at once against K sequential samples.

    OMP_NUM_THREADS=1 python benchmarks/rerank_decoding.py [--candidates 50] [--slots 10] [--samples 64]
                                                          [--author-cap 2] [--threads 1] [--repeats 50]

The embedded models (`--model`, default `recsys/rerank/defaults/model`: d 64, 4 heads, teacher and student of
two blocks each) and one random request (`recsys.rerank.models.testing.random_page_batch`, authors from a pool
of n/2, so the cap binds), batch of one, under `torch.inference_mode`; process CPU time, timed in round-robin
after warm-up, median of `--repeats`. Prints each decoder's median milliseconds and its ratio to the named
baseline measured in the same run: "AR greedy" for the single-page decoders, "sequential" for the samplers.

Also times NAR greedy a second time right after itself (`WARM_NAR`) and, in a run of its own, against its
parts (candidate encoder, whole forward, decoding a ready matrix).

Measured on this project's 2-core CPU (torch 2.13, float32, 1 thread, median of 50), n = 50, m = 10, K = 64,
cap 2, two runs at load average 0.5 (other jobs' load swings these times by up to 1.5x; see below):

| decoder                      | ms (two runs) | x AR greedy  |
|------------------------------|---------------|--------------|
| AR greedy                    | 4.00, 4.20    | 1.00         |
| NAR greedy                   | 0.85, 0.92    | 4.70, 4.55   |
| NAR greedy, again            | 0.80, 0.87    | 4.99, 4.84   |
| NAR assignment               | 0.85, 0.89    | 4.72, 4.70   |
| NAR contrastive              | 1.14, 1.21    | 3.52, 3.47   |
| score-and-sort greedy        | 0.12, 0.13    | 33.6, 33.0   |

| NAR greedy, where its time goes (own run) | ms (two runs) |
|-------------------------------------------|---------------|
| NAR greedy                                | 0.76, 0.78    |
| candidate encoder                         | 0.42, 0.43    |
| forward (matching matrix)                 | 0.65, 0.67    |
| decoding a ready matrix                   | 0.09, 0.09    |

| 64 pages per request         | sequential ms | Gumbel-max ms | x sequential |
|------------------------------|---------------|---------------|--------------|
| NAR student                  | 22.7, 23.3    | 3.12, 2.70    | 7.3, 8.6     |
| AR teacher                   | 240, 243      | 41.5, 41.1    | 5.8, 5.9     |

Before the decoding of one request moved to Python lists (`recsys.rerank.models.decoding.FEW_ROWS`), NAR greedy
was 3.85x faster than AR greedy in two quiet runs (AR 4.37 / 4.08 ms, NAR 1.14 / 1.06 ms), its ready matrix
taking about 0.33 ms to decode (a dozen tensor ops per slot, then `step_log_probs`). The previous commit's
`greedy` against this one in one run, each NAR call right after AR: 3.70 -> 4.46x quiet; 3.34 -> 3.94x, 3.63 ->
4.33x and 3.51 -> 4.21x at load 4-5, where this benchmark gave 4.03 / 4.58x (4.87 / 4.94x warm).

So the issue's goal (NAR >= 5x faster than AR per request) is still MISSED, narrowly: 4.6-4.7x, 4.8-5.0x when
NAR requests come in a row. Decoding is now a ninth of NAR greedy; the rest is the student's forward, whose
floor is the candidate encoder both models share (AR = encoder + m decoder steps, about 0.42 + 10 x 0.36 ms;
NAR = encoder + one slot stack + decoding, about 0.42 + 0.24 + 0.09 ms). The first NAR call of a round follows
AR greedy and finds the teacher's weights in the caches instead of its own (about 0.9 MB each, fp32): 0.05 ms
more when quiet, 0.15-0.2 ms under load. The ratio grows with m and with a cheaper shared encoder, not with a
faster NAR decoder alone; a one-block student (`student_layers=1`, another training run) measured 4.94x before
this change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import interleaved_median_ms
from recsys.data.pages import PageBatch
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

WARM_NAR = "NAR greedy, again"
"""NAR greedy timed right after itself: the student's weights in cache, not the teacher's (the first call of a
round follows AR greedy). The goal is judged on the first."""


def print_table(title: str, results: dict[str, float], baseline: str) -> None:
    print(f"\n{title} (baseline: {baseline})")
    for name, ms in results.items():
        print(f"  {name:28s} {ms:8.2f} ms   baseline / this = {results[baseline] / ms:6.2f}x")


class FixedMatrix:
    """A NAR policy whose matching matrix is already computed, so that greedy's decoding is timed alone."""

    decodes_autoregressively = False

    def __init__(self, logits: torch.Tensor) -> None:
        self.matrix = logits

    def logits(self, batch: PageBatch) -> torch.Tensor:
        return self.matrix


def nar_breakdown(student, batch: PageBatch, repeats: int) -> dict[str, float]:
    """NAR greedy against its parts: the candidate encoder, the whole forward (encoder + slot stack + pointer)
    and the decoding of a ready matrix (feasibility check, masked greedy, probabilities). Timed together but
    apart from the AR teacher, so each starts with the student's weights warm."""
    with torch.inference_mode():
        matrix = FixedMatrix(student.logits(batch))
    return interleaved_median_ms(
        {
            "NAR greedy": lambda: greedy(student, batch),
            "candidate encoder": lambda: student.encoder(batch),
            "forward (matching matrix)": lambda: student.logits(batch),
            "decoding a ready matrix": lambda: greedy(matrix, batch),
        },
        repeats,
    )


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
            WARM_NAR: lambda: greedy(student, batch),
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
    print(
        f"  (called right after AR greedy; {single['AR greedy'] / single[WARM_NAR]:.1f}x right after itself, "
        "its weights still in cache, as for NAR requests in a row)"
    )

    breakdown = nar_breakdown(student, batch, args.repeats)
    print_table("NAR greedy, where its time goes (a run of its own)", breakdown, "NAR greedy")

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
    return {**single, **breakdown, **samplers}


if __name__ == "__main__":
    main()
