"""Recall of out-of-window facts on held-out dialogues: with the Contextformer memory, with the window alone, and
with the whole history given to the LM (no window).

    result = memory_recall("generation/dialogue/memory/default", num_dialogues=200, seeds=(1, 2, 3))
    table = format_recall_table(result)    # the command line (memory/cli) prints it

A question counts when its fact was stated before the window (`Example.fact_in_window` is False); recall is the
exact match of the greedy answer (every value token, then `<eos>`). The two baselines run the plain LM (LoRA
adapters, if any, switched off), so "whole history" is what the LM alone achieves given everything. Prompt
tokens are the positions the LM attends over for the question: the memory prefix counts `num_queries`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from generation.dialogue.memory.contextformer import ContextformerLM
from generation.dialogue.memory.lm import encode_example, memory_batch
from generation.dialogue.memory.task import TaskConfig, generate_dialogues

logger = logging.getLogger(__name__)

READERS = ("with_memory", "window_only", "whole_history")
DEFAULT_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_SEEDS = (101, 102, 103)


def _answers(model: ContextformerLM, examples, reader: str, batch_size: int) -> list[bool]:
    hits = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        max_new = max(len(e.answer) for e in chunk) + 1
        if reader == "with_memory":
            _, _, _, turn_ids, turn_mask, slot_mask = memory_batch(model, chunk)
            with torch.no_grad():
                memory = model.encode_turn_ids(turn_ids, turn_mask)
            out = model.generate([e.window for e in chunk], memory, slot_mask, max_new_tokens=max_new)
        else:
            prompts = [e.window if reader == "window_only" else e.history for e in chunk]
            with model.without_adapter():
                out = model.generate(prompts, max_new_tokens=max_new)
        eos = model.tokenizer.eos_token_id
        hits += [generated + [eos] == e.answer for generated, e in zip(out, chunk, strict=True)]
    return hits


def _prompt_tokens(model: ContextformerLM, example, reader: str) -> int:
    if reader == "with_memory":
        return len(example.window) + model.config.num_queries
    return len(example.window if reader == "window_only" else example.history)


def recall_of(
    model: ContextformerLM,
    *,
    num_dialogues: int,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    task: TaskConfig | None = None,
    batch_size: int = 64,
) -> dict:
    """`memory_recall` on a loaded model."""
    per_seed: dict[str, list[float]] = {r: [] for r in READERS}
    tokens: dict[str, list[int]] = {r: [] for r in READERS}
    counted = 0
    config, task = model.config, task or TaskConfig()
    for seed in seeds:
        dialogues = generate_dialogues(num_dialogues, split="test", seed=seed, config=task)
        examples = [
            encode_example(model.tokenizer, d, config.window_tokens, config.memory_slots) for d in dialogues
        ]
        examples = [e for e in examples if not e.fact_in_window]
        counted += len(examples)
        for reader in READERS:
            per_seed[reader].append(float(np.mean(_answers(model, examples, reader, batch_size))))
            tokens[reader] += [_prompt_tokens(model, e, reader) for e in examples]
    return {
        "split": "test",
        "seeds": list(seeds),
        "num_dialogues": num_dialogues,
        "questions": counted,
        "window_tokens": config.window_tokens,
        "memory_slots": config.memory_slots,
        "num_queries": config.num_queries,
        **{
            reader: {
                "recall_mean": float(np.mean(per_seed[reader])),
                "recall_std": float(np.std(per_seed[reader])),
                "per_seed": per_seed[reader],
                "prompt_tokens_mean": float(np.mean(tokens[reader])),
            }
            for reader in READERS
        },
    }


def memory_recall(
    model_dir: str | Path,
    *,
    num_dialogues: int = 200,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    task: TaskConfig | None = None,
) -> dict:
    """Recall of out-of-window facts on `num_dialogues` held-out dialogues per seed, for each reader (`READERS`):
    mean and standard deviation over seeds, and the mean prompt tokens each needs."""
    model = ContextformerLM.from_pretrained(model_dir)
    return recall_of(model, num_dialogues=num_dialogues, seeds=tuple(seeds), task=task)


def format_recall_table(result: dict) -> str:
    """A plain-text table of a `memory_recall` result."""
    lines = [
        f"out-of-window recall on held-out dialogues ({result['questions']} questions, seeds {result['seeds']}; "
        f"window {result['window_tokens']} tokens, memory {result['memory_slots']} turns -> "
        f"{result['num_queries']} prefix tokens)",
        f"{'reader':<15}{'recall':>18}{'prompt tokens':>16}",
    ]
    for reader in READERS:
        row = result[reader]
        recall = f"{row['recall_mean']:.3f} ± {row['recall_std']:.3f}"
        lines.append(f"{reader:<15}{recall:>18}{row['prompt_tokens_mean']:>16.1f}")
    return "\n".join(lines)
