"""Memory overhead per turn: the Contextformer memory (encode the new turn, read the memory, LM forward over
[prefix; window]) against the LM's own forward over the same window, and the whole history as a second baseline.

    OMP_NUM_THREADS=1 python -m benchmarks.dialogue_memory [--model generation/dialogue/memory/default]
                                                          [--threads 1] [--repeats 50] [--seed 0]

One held-out dialogue of the recall task (`generation.dialogue.memory.task`, split "test"), batch of one, the
prompt forward of its question turn (what a reply's first token costs; later tokens run on the KV cache, where
the prefix adds only its `num_queries` cached positions). Memory per turn = embedding the newest turn (the FIFO
keeps the others' vectors) + the Contextformer read + the LM forward with the prefix. Process CPU time under
`torch.inference_mode`, timed in round-robin after warm-up, median of `--repeats`. Prints milliseconds, prompt
positions and the ratio of each to the LM's own forward over the window.

Measured on this project's shared 2-core CPU (torch 2.13, float32, 1 thread, median of 50; load average below 1)
with the committed default (`generation/dialogue/memory/default`: Llama, hidden 96, 3 layers; memory of 16 slots
read by 16 queries into soft tokens over the 192-word vocabulary):

| reader            | ms   | x window | prompt positions | x window |
|-------------------|------|----------|------------------|----------|
| LM, window only   | 1.18 | 1.00     | 41               | 1.00     |
| LM + memory       | 2.24 | 1.90     | 57               | 1.39     |
| LM, whole history | 2.10 | 1.78     | 121              | 2.95     |

For an LM this small the memory's own work (the turn encoder's layer over the new turn, the Contextformer read,
the soft tokens' softmax over the vocabulary) costs about as much as the LM's forward over the window, so the
memory is no faster than the whole history here; what it saves is prompt positions (16 prefix positions against
80 more for the whole history, and constant as the dialogue grows), which is what dominates for a real LM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import interleaved_median_ms
from generation.dialogue.memory.contextformer import ContextformerLM
from generation.dialogue.memory.lm import encode_example, memory_batch
from generation.dialogue.memory.task import generate_dialogues

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "generation" / "dialogue" / "memory" / "default"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a trained memory folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="which held-out dialogue")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = ContextformerLM.from_pretrained(args.model)
    config = model.config
    dialogue = generate_dialogues(1, split="test", seed=args.seed)[0]
    example = encode_example(model.tokenizer, dialogue, config.window_tokens, config.memory_slots)
    window, history = torch.tensor([example.window]), torch.tensor([example.history])
    _, _, _, turn_ids, turn_mask, slot_mask = memory_batch(model, [example])
    with torch.inference_mode():
        stored = model.encode_turn_ids(turn_ids, turn_mask)  # (1, C, memory_dim): the FIFO's vectors
    newest = len(example.turns) - 1

    def with_memory():
        vector = model.encode_turn_ids(turn_ids[:, newest], turn_mask[:, newest])  # the new turn only
        memory = stored.clone()
        memory[:, newest] = vector
        return model(window, memory=memory, memory_mask=slot_mask)

    def window_only():
        with model.without_adapter():
            return model(window)

    def whole_history():
        with model.without_adapter():
            return model(history)

    timings = interleaved_median_ms(
        {"LM, window only": window_only, "LM + memory": with_memory, "LM, whole history": whole_history},
        args.repeats,
    )
    tokens = {
        "LM, window only": window.shape[1],
        "LM + memory": window.shape[1] + config.num_queries,
        "LM, whole history": history.shape[1],
    }
    baseline = "LM, window only"
    print(
        f"window {config.window_tokens} tokens, memory {config.memory_slots} turns -> {config.num_queries} prefix "
        f"positions, threads {args.threads}, median of {args.repeats} ({args.model})"
    )
    print(f"  {'reader':20s} {'ms':>8s} {'x window':>9s} {'prompt positions':>17s} {'x window':>9s}")
    for name, ms in timings.items():
        print(
            f"  {name:20s} {ms:8.2f} {ms / timings[baseline]:8.2f}x {tokens[name]:17d} "
            f"{tokens[name] / tokens[baseline]:8.2f}x"
        )
    return timings


if __name__ == "__main__":
    main()
