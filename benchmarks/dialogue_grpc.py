"""What the DialogueService costs on top of the language model: time to first token and tokens/s of a streamed
chit-chat reply through gRPC `Chat`, against the model's own `stream` on the same prompt in this process.

    .venv/bin/python benchmarks/dialogue_grpc.py                       # the tiny random Llama; under a minute
    .venv/bin/python benchmarks/dialogue_grpc.py --model DIR --tokens 64 --requests 20

Model: `--model DIR` (any causal LM transformers loads: `hf:DIR`), else the tiny random Llama of
`generation.dialogue.backends.testing.tiny_causal_lm_dir` in a temporary directory. Both sides run the same
weights with `--threads` torch threads, greedy, `--tokens` new tokens at most.

Per request (+ `--warmup` untimed first), in a seeded random order per request so that load drift hits both alike:
- direct (the baseline): `lm.stream(prompt, params)` in this process, where `prompt` is exactly what the engine
  sends for the first chit-chat turn of a session (template "chat", no topic, history or memory yet);
- gRPC: `Chat` (mode chit-chat) in a fresh session of `python -m services.dialogue --backend hf:DIR` on
  127.0.0.1, one channel; the engine's work around the model (the turn's MiniLM embedding for its memory, the
  memory lookup, the one SQLite transaction that stores the exchange) is inside the timing: it is what a user
  waits for.
Reported at the median: TTFT (request sent -> first text piece) and the whole reply's time (request sent -> last
piece; its inverse times the reply's pieces is the tokens/s a user sees, one piece per token by the backend
contract; the pieces are counted on the direct side, whose text is checked to be the same as gRPC's, which may
join pieces that queued up into one message), and the ratios gRPC / direct; the goal is <= 1.1x. Nothing is asserted; only numbers of the same run
compare. The tiny model makes a token in well under a millisecond, so its ratios are the worst case: a real
model's forward dwarfs the transport.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import start_service, stop_service

GOAL = 1.1
MESSAGE = "Tell me about the dumplings you made in the live stream tonight, please."


def timed(pieces) -> tuple[float, float, str]:
    """(seconds to the first text piece, seconds to the last, text) of a stream of text pieces."""
    start = time.perf_counter()
    first = last = None
    text = ""
    for piece in pieces:
        if piece:
            last = time.perf_counter() - start
            first = first if first is not None else last
            text += piece
    if first is None:
        return float("nan"), float("nan"), ""
    return first, last, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--model", type=Path, default=None, help="a causal LM folder (default: the tiny Llama)"
    )
    parser.add_argument("--requests", type=int, default=30, help="timed requests (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (default: 3)")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per reply at most (default: 48)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server")
    parser.add_argument("--seed", type=int, default=0, help="seed of the call order")
    args = parser.parse_args()

    import grpc
    import torch
    from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

    from generation.dialogue.backends.base import GenerationParams
    from generation.dialogue.backends.registry import load_backend
    from generation.dialogue.backends.testing import tiny_causal_lm_dir
    from generation.dialogue.reasoning import templates

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), cpu count {os.cpu_count()}, {args.tokens} tokens"
    )
    with tempfile.TemporaryDirectory(prefix="dialogue-grpc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or tiny_causal_lm_dir(tmp / "tiny-llama")
        print(f"model: {model}{'' if args.model else ' (tiny random Llama)'}")
        lm = load_backend(f"hf:{model}")
        prompt = templates.render("chat", topic="", memory="", history="", message=MESSAGE)
        params = GenerationParams(max_new_tokens=args.tokens, temperature=0.0, stop=templates.REPLY_STOP)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the server's torch threads
        process, port = start_service(
            "services.dialogue", "kmono.dialogue.v1.DialogueService",
            ["--backend", f"hf:{model}", "--data-dir", str(tmp / "data"), "--max-output-tokens", str(args.tokens)],
            tmp / "server.log",
        )  # fmt: skip
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = dialogue_pb2_grpc.DialogueServiceStub(channel)

                def new_session() -> str:
                    request = dialogue_pb2.CreateSessionRequest(user_id="bench")
                    return stub.CreateSession(request, timeout=30).session.session_id

                def remote(session_id: str):
                    request = dialogue_pb2.ChatRequest(
                        session_id=session_id, text=MESSAGE, mode=dialogue_pb2.DIALOGUE_MODE_CHIT_CHAT,
                        max_output_tokens=args.tokens,
                    )  # fmt: skip
                    for message in stub.Chat(
                        request, timeout=120
                    ):  # sent on the first next(): inside the clock
                        yield message.text_delta

                names = ["direct lm.stream (baseline)", "gRPC Chat"]
                results: dict[str, list[tuple[float, float, str]]] = {name: [] for name in names}
                rng = np.random.default_rng(args.seed)
                for i in range(args.warmup + args.requests):
                    for k in rng.permutation(len(names)):
                        if k == 0:
                            outcome = timed(lm.stream(prompt, params))
                        else:
                            outcome = timed(remote(new_session()))  # the session is made before the clock
                        if i >= args.warmup:
                            results[names[k]].append(outcome)
        finally:
            stop_service(process)
    base_name, remote_name = names
    texts = {name: {r[2] for r in rows} for name, rows in results.items()}
    pieces = len([p for p in lm.stream(prompt, params) if p])
    print(f"same replies on both sides: {texts[base_name] == texts[remote_name]} ({pieces} pieces a reply)")
    print(f"  {'':<30} {'TTFT ms p50':>12} {'reply ms p50':>13} {'pieces/s':>9}")
    medians = {}
    for name, rows in results.items():
        ttft, whole = (1e3 * float(np.nanmedian([r[i] for r in rows])) for i in (0, 1))
        medians[name] = (ttft, whole)
        print(f"  {name:<30} {ttft:12.2f} {whole:13.2f} {1e3 * pieces / whole:9.1f}")
    for what, i in (("TTFT", 0), ("whole reply (tokens/s)", 1)):
        ratio = medians[remote_name][i] / medians[base_name][i]
        print(
            f"  {what} gRPC / direct = {ratio:.3f}x: goal <= {GOAL}x {'met' if ratio <= GOAL else 'missed'}"
        )
    print(f"total {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
