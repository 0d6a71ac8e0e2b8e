"""The bundled Gemma 3 270M through transformers (fp32, the baseline) and llama.cpp: load time, time to first
token and decode speed on a short few-shot prompt, with ratios against the transformers baseline.

    .venv/bin/python benchmarks/dialogue_backends.py                   # about 5 minutes on a 2-core CPU
    .venv/bin/python benchmarks/dialogue_backends.py --tokens 64 --repeat 3 --threads 2
    .venv/bin/python benchmarks/dialogue_backends.py --cache-dir ~/.cache/kmono/lm   # reuse a conversion

Needs the `llm` extra (pip install 'kmono[llm]'). What is measured, with the same prompt, thread count and
greedy decoding for both runtimes:
1. load: transformers' first load (GGUF de-quantised to fp32 and written to a fresh conversion cache, then
   loaded), its cached load (from the safetensors directory), and llama.cpp's load of the GGUF itself;
2. time to first token (prompt processing + one decode step) and tokens/s after the first token
   (pieces / seconds between the first and the last piece), median of `--repeat` streams, interleaved; each
   stream's prompt starts with a different line, so neither runtime reuses a cached prompt prefix;
3. our transformers streaming loop against transformers' own `generate` on the same model and prompt.
Both wall-clock time (what a user waits) and process CPU time (as `benchmarks/common.py`: other jobs on a
shared machine do not inflate it; comparable across runtimes when both run the same number of threads, which
`--threads` makes so). On a busy machine, trust the CPU-time ratios more than the wall-clock ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generation.dialogue.backends.llama_cpp_lm import DEFAULT_THREADS  # noqa: E402 - after the offline switch

FEW_SHOT_PROMPT = (
    "Product: red desk lamp. Question: what colour is it? Answer: It is red.\n"
    "Product: oak dining table. Question: what is it made of? Answer: It is made of oak.\n"
    "Product: blue linen sofa. Question: what colour is it? Answer:"
)


def fresh_prompt(run: int) -> str:
    """The few-shot prompt under a first line that differs per run, so no runtime reuses a cached prefix
    (llama.cpp keeps the previous prompt's KV cache; transformers recomputes): time to first token is cold."""
    return f"Shop {run}.\n{FEW_SHOT_PROMPT}"


@dataclass(frozen=True)
class Timing:
    first_token_s: float
    tokens_per_s: float  # pieces per second after the first one
    total_s: float
    pieces: int
    reply: str
    first_token_cpu_s: float  # the same in process CPU time, which other jobs on the machine do not inflate
    tokens_per_cpu_s: float


def timed_stream(lm, prompt: str, max_new_tokens: int) -> Timing:
    """One greedy stream, timed piece by piece."""
    from generation.dialogue.backends.base import GenerationParams

    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    start, start_cpu = time.perf_counter(), time.process_time()
    stamps, cpu_stamps, pieces = [], [], []
    for piece in lm.stream(prompt, params, threading.Event()):
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        pieces.append(piece)
    if not stamps:
        raise RuntimeError(f"{lm.name} returned nothing for the benchmark prompt")

    def rate(marks: list[float]) -> float:
        return (len(marks) - 1) / (marks[-1] - marks[0]) if marks[-1] > marks[0] else float("nan")

    return Timing(
        first_token_s=stamps[0] - start,
        tokens_per_s=rate(stamps),
        total_s=stamps[-1] - start,
        pieces=len(pieces),
        reply="".join(pieces),
        first_token_cpu_s=cpu_stamps[0] - start_cpu,
        tokens_per_cpu_s=rate(cpu_stamps),
    )


def timed_generate(lm, prompt: str, max_new_tokens: int) -> float:
    """Seconds of transformers' own `generate` (greedy, exactly `max_new_tokens`) on the same model: the
    reference our streaming loop must not fall behind."""
    import torch

    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"].to(lm.device)
    start = time.perf_counter()
    with torch.inference_mode():
        lm.model.generate(ids, do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per stream (default 32)")
    parser.add_argument(
        "--repeat", type=int, default=2, help="streams per runtime, medians reported (default 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"CPU threads for both runtimes (default {DEFAULT_THREADS}: one per physical core, llama.cpp's default)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="LM cache to convert into (default: a fresh temporary one, so the first load is a real conversion)",
    )
    parser.add_argument("--skip-llamacpp", action="store_true", help="measure transformers only")
    args = parser.parse_args()

    import torch

    from generation.dialogue.backends.gemma import gemma_gguf_path, llama_cpp_available
    from generation.dialogue.backends.gguf_cache import is_converted, load_gguf

    torch.set_num_threads(args.threads)
    temporary = None
    cache_root = args.cache_dir
    if cache_root is None:
        temporary = tempfile.TemporaryDirectory(prefix="kmono-lm-bench-")
        cache_root = Path(temporary.name)

    start = time.perf_counter()
    gguf_path = gemma_gguf_path(cache_root)
    print(
        f"GGUF {gguf_path.name}: {gguf_path.stat().st_size / 2**20:.0f} MiB, assembled in {time.perf_counter() - start:.1f} s"
    )

    loads: dict[str, float] = {}
    was_converted = is_converted(gguf_path, cache_root)
    start = time.perf_counter()
    transformers_lm = load_gguf(gguf_path, cache_root=cache_root, device="cpu", name="transformers-fp32")
    first_label = (
        "transformers load (cache already held it)" if was_converted else "transformers first load (convert)"
    )
    loads[first_label] = time.perf_counter() - start
    del transformers_lm
    start = time.perf_counter()
    transformers_lm = load_gguf(gguf_path, cache_root=cache_root, device="cpu", name="transformers-fp32")
    loads["transformers cached load"] = time.perf_counter() - start
    runtimes = {"transformers-fp32": transformers_lm}

    if not args.skip_llamacpp:
        if not llama_cpp_available():
            print("llama-cpp-python is not installed: pip install 'kmono[llm]' to measure llama.cpp")
        else:
            from generation.dialogue.backends.gemma import GEMMA_LLAMACPP_CONTEXT
            from generation.dialogue.backends.llama_cpp_lm import LlamaCppLM

            start = time.perf_counter()
            runtimes["llama.cpp-q4_k_m"] = LlamaCppLM(
                gguf_path, n_ctx=GEMMA_LLAMACPP_CONTEXT, n_threads=args.threads, name="llama.cpp-q4_k_m"
            )
            loads["llama.cpp load"] = time.perf_counter() - start

    print(f"\nthreads {args.threads}, {args.tokens} new tokens, greedy, median of {args.repeat}")
    print("\nload                                     seconds   ratio to transformers cached load")
    baseline_load = loads["transformers cached load"]
    for label, seconds in loads.items():
        print(f"{label:40s} {seconds:8.2f}   {seconds / baseline_load:6.2f}x")

    # Two untimed streams each: the first batched prompt evaluation pays one-off costs (llama.cpp: about 4 s
    # of weight repacking and page faults here; torch: allocator warm-up).
    for lm in runtimes.values():
        for run in (-2, -1):
            timed_stream(lm, fresh_prompt(run), 2)
    results: dict[str, list[Timing]] = {name: [] for name in runtimes}
    generate_s: list[float] = []
    for run in range(args.repeat):
        for name, lm in runtimes.items():
            results[name].append(timed_stream(lm, fresh_prompt(run), args.tokens))
        generate_s.append(timed_generate(runtimes["transformers-fp32"], fresh_prompt(run), args.tokens))

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(timing, field) for timing in results[name])

    for clock, ttft_field, rate_field in (
        ("wall", "first_token_s", "tokens_per_s"),
        ("CPU", "first_token_cpu_s", "tokens_per_cpu_s"),
    ):
        print(
            f"\n{clock} time: runtime    first token s   tokens/s   TTFT ratio   speed ratio (vs transformers-fp32)"
        )
        base_ttft, base_rate = (
            median("transformers-fp32", ttft_field),
            median("transformers-fp32", rate_field),
        )
        for name in results:
            ttft, rate = median(name, ttft_field), median(name, rate_field)
            print(
                f"{name:20s} {ttft:13.3f}   {rate:8.2f}   {ttft / base_ttft:9.2f}x   {rate / base_rate:9.2f}x"
            )
    stream_s = median("transformers-fp32", "total_s")
    print(
        f"\ntransformers: our streaming loop {stream_s:.2f} s for {median('transformers-fp32', 'pieces'):.0f} pieces, "
        f"generate {statistics.median(generate_s):.2f} s for {args.tokens} tokens "
        f"(ratio {stream_s / statistics.median(generate_s):.2f}x)"
    )
    print("\nreplies (greedy):")
    for name, runs in results.items():
        print(f"  {name}: {runs[-1].reply!r}")
    for lm in runtimes.values():
        lm.close()
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
