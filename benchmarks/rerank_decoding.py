"""Per-request decoding latency of the rerankers: AR teacher against NAR student (issue 13's goal: NAR >= 5x
faster at n = 50 candidates, m = 10 slots), and K Gumbel-max samples at once against K sequential samples.

    OMP_NUM_THREADS=1 python benchmarks/rerank_decoding.py [--candidates 50] [--slots 10] [--samples 64]
                                                          [--author-cap 2] [--threads 1] [--repeats 50]

The embedded models (`--model`, default `recsys/rerank/defaults/model`: d 64, 4 heads, a teacher of two blocks,
a student of one) and one random request (`recsys.rerank.models.testing.random_page_batch`, authors from a pool
of n/2, so the cap binds), batch of one, under `torch.inference_mode`; process CPU time, median of `--repeats`.
Prints each decoder's median milliseconds and its ratio to the named baseline measured in the same run: "AR
greedy" for the single-page decoders, "sequential" for the samplers.

AR against NAR is timed two ways, and the goal is judged on each:
- round-robin: every call right after another decoder's, so each model starts with the other's weights in the
  CPU caches (the harshest case for NAR, whose whole work is one pass over cold weights; AR's later steps are warm);
- steady state: `IN_A_ROW` calls of one decoder per turn, what a service whose requests use one decoder sees
  (NAR is the service's default).
Also, in a run of its own, NAR greedy against its parts (candidate encoder, whole forward, decoding a ready matrix).

Measured on this project's 2-core CPU (torch 2.13, float32, 1 thread, median of 50), n = 50, m = 10, K = 64,
cap 2, with the one-block student and the teacher projecting the candidates' cross-attention keys and values
once per request (`TeacherState.memory_kv`); two runs at load average 1.2-1.8 (a training job shared the CPU):

| decoder                                 | ms (two runs) | x AR greedy    |
|-----------------------------------------|---------------|----------------|
| AR greedy, round-robin                  | 3.43, 3.98    | 1.00           |
| NAR greedy, round-robin                 | 0.63, 0.91    | 5.44, 4.39     |
| NAR assignment, round-robin             | 0.64, 0.77    | 5.37, 5.16     |
| NAR contrastive, round-robin            | 0.92, 1.01    | 3.74, 3.94     |
| score-and-sort greedy, round-robin      | 0.13, 0.15    | 26.8, 26.1     |
| AR greedy, steady state                 | 3.79, 3.53    | 1.00           |
| NAR greedy, steady state                | 0.59, 0.55    | **6.43, 6.47** |

| NAR greedy, where its time goes (own run) | ms (two runs) |
|-------------------------------------------|---------------|
| NAR greedy                                | 0.59, 0.49    |
| candidate encoder                         | 0.28, 0.25    |
| forward (matching matrix)                 | 0.41, 0.38    |
| decoding a ready matrix                   | 0.12, 0.09    |

| 64 pages per request         | sequential ms | Gumbel-max ms | x sequential |
|------------------------------|---------------|---------------|--------------|
| NAR student                  | 25.2, 23.2    | 2.91, 2.63    | 8.7, 8.8     |
| AR teacher                   | 220, 198      | 36.6, 32.9    | 6.0, 6.0     |

So the issue's goal (NAR >= 5x faster than AR per request) holds in the steady state, 6.4-6.5x; round-robin it
is 4.4-5.4x, load-sensitive, because the cold first pass of the student pays for the teacher's weights in the
caches. Before the teacher kept the candidates' keys and values (same session, load 2.1-2.5, AR then about 10%
slower): steady state 7.2-8.1x (AR 3.95-4.50 ms, NAR 0.55-0.56 ms), round-robin 3.8-4.9x; with the helper's
four runs at load 1.8, round-robin 5.1-6.2x.

History: with the two-block student (before `PipelineConfig.model` set `student_layers=1`) NAR greedy was
4.6-4.7x faster round-robin on a quiet machine (AR 4.0-4.2 ms, NAR 0.85-0.92 ms), 4.0-4.3x under load; NAR is
almost all forward arithmetic (AR = encoder + m decoder steps, NAR = encoder + one slot stack + decoding), so the
lever was the student's depth, which distillation keeps at 99.9-100% of the teacher's utility (`kmono rerank eval`).
Before the decoding of one request moved to Python lists (`recsys.rerank.models.decoding.FEW_ROWS`) NAR greedy
decoded its ready matrix in about 0.33 ms; now 0.09-0.14 ms.
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

IN_A_ROW = 10
"""Calls per turn in the steady-state table: a service whose requests all use one decoder keeps that model's
weights (about 0.5-1 MB each, fp32) in the CPU caches; the round-robin table times every call right after
another model's."""


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
            "NAR assignment": lambda: assignment(student, batch),
            "NAR contrastive": lambda: contrastive(student, batch),
            "score-and-sort greedy": lambda: greedy(ScoreAndSort(), batch),
        },
        args.repeats,
    )
    print_table(
        "one page per request, round-robin (each call right after another decoder's)", single, "AR greedy"
    )
    steady = interleaved_median_ms(
        {"AR greedy": lambda: greedy(teacher, batch), "NAR greedy": lambda: greedy(student, batch)},
        max(5, args.repeats // IN_A_ROW),
        in_a_row=IN_A_ROW,
    )
    print_table(
        f"one page per request, steady state ({IN_A_ROW} calls of a decoder in a row)", steady, "AR greedy"
    )
    for label, times in (("round-robin", single), ("steady state", steady)):
        ratio = times["AR greedy"] / times["NAR greedy"]
        verdict = "holds" if ratio >= GOAL else "MISSED"
        print(f"  {label}: NAR greedy is {ratio:.1f}x faster than AR greedy: goal >= {GOAL:.0f}x {verdict}")

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
    return {**single, **{f"{name}, steady state": ms for name, ms in steady.items()}, **breakdown, **samplers}


if __name__ == "__main__":
    main()
