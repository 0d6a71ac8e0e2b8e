"""The whole memory recipe: the tiny LM (stage 1), then the Contextformer over it (stage 2), then the recall table.

    python -m generation.dialogue.memory.train --out generation/dialogue/memory/default

writes `OUT/lm/` (the LM and its tokenizer, a standard HF directory), `OUT/memory.safetensors` and
`OUT/memory_config.json` (the trainable memory parts; the config names the LM as "lm"), `OUT/training.json`
(recipe, configs, seconds, final losses) and `OUT/eval.json` (`evaluate.recall_of` on held-out dialogues).
`--preset tiny` runs the same code for a few steps on tiny sizes (tests).

Status (measured on the shared 2-core CPU, 1 torch thread; the committed `default/`): trained in 391 s
(345 s stage 1), recall of out-of-window facts on held-out dialogues (600 questions, seeds
[101, 102, 103], held-out statement templates): with memory 0.992 ± 0.002 (57.3 prompt positions),
window only 0.090 ± 0.019 (41.3), whole history 1.000 ± 0.000 (118.7). The bar (>= 0.8, >= 3x the window
alone) is checked on a fresh seed by default_test.py; default/README.md has the table.

History of the measurements that shaped the recipe (`lm.py` and `contextformer.py` say why each part is there):
with values spelled over several tokens, a linear projection and a text-only LM, recall with memory stayed 0.0;
with one-token values, soft tokens, the fact-token loss and the joint stage 1, but one value pool shared by all
keys of a kind, 0.54 with memory and 0.52 from the whole history (the LM matched the kind, not the key); with a
pool per key and key-first training templates, 0.65 on the held-out templates (1.00 on the training ones); a
fresh stage-2 memory on more varied templates, 0.76 after 300 steps; hence stage 2 starts from stage 1's memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from generation.dialogue.memory.contextformer import ContextformerConfig, ContextformerLM
from generation.dialogue.memory.evaluate import DEFAULT_SEEDS, format_recall_table, recall_of
from generation.dialogue.memory.lm import LMConfig, MemoryTrainConfig, build_tokenizer, train_lm, train_memory
from generation.dialogue.memory.task import TaskConfig

logger = logging.getLogger(__name__)

LM_DIR = "lm"


@dataclass(frozen=True)
class Recipe:
    lm: LMConfig
    memory: ContextformerConfig
    training: MemoryTrainConfig
    task: TaskConfig
    eval_dialogues: int


PRESETS = {
    "default": Recipe(
        LMConfig(), ContextformerConfig(), MemoryTrainConfig(), TaskConfig(), eval_dialogues=200
    ),
    "tiny": Recipe(
        LMConfig(
            hidden_size=32,
            num_layers=2,
            intermediate_size=64,
            steps=3,
            batch_size=4,
            reader_steps=1,
            short_steps=1,
        ),
        ContextformerConfig(
            memory_slots=8, memory_dim=16, num_queries=8, hidden_size=16, turn_pool_queries=1, lora_rank=2
        ),
        MemoryTrainConfig(steps=3, batch_size=4, reader_steps=1, short_steps=1),
        TaskConfig(num_turns=8, num_facts=2, facts_in_first_turns=4),
        eval_dialogues=4,
    ),
}


def train(out: str | Path, *, preset: str = "default", seed: int = 0, progress_bar: bool = True) -> dict:
    """Run the recipe `preset` into `out`; returns the evaluation result (also in `out/eval.json`)."""
    recipe = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=recipe.lm.steps + recipe.training.steps, desc="memory recipe", disable=not progress_bar)
    losses: dict[str, float] = {}

    def progress(stage: str):
        def update(step: int, loss: float) -> None:
            losses[stage] = loss
            bar.set_postfix(stage=stage, loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

        return update

    started = time.perf_counter()
    tokenizer = build_tokenizer()
    # Stage 1 trains the LM together with a memory of the same sizes (no LoRA: the whole LM learns there).
    augmented = train_lm(
        tokenizer, recipe.lm, recipe.task, dataclasses.replace(recipe.memory, lora_rank=0), seed=seed,
        progress=progress("lm"),
    )  # fmt: skip
    augmented.lm.save_pretrained(out / LM_DIR)
    tokenizer.save_pretrained(out / LM_DIR)
    lm_seconds = time.perf_counter() - started

    # Stage 2: the LM frozen, the memory (starting from stage 1's) trains on new dialogues. A fresh memory
    # reached 0.65-0.76 on held-out templates in 300 steps (1.00 on the training templates).
    config = dataclasses.replace(recipe.memory, lm_path=str(out / LM_DIR))
    model = ContextformerLM.from_config(config, seed=seed)
    model.load_trainable_state(augmented.trainable_state())
    train_memory(model, recipe.training, recipe.task, seed=seed, progress=progress("memory"))
    model.save_pretrained(out, lm_path=LM_DIR)
    train_seconds = time.perf_counter() - started
    bar.close()

    result = recall_of(model, num_dialogues=recipe.eval_dialogues, seeds=DEFAULT_SEEDS, task=recipe.task)
    record = {
        "recipe": preset,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "seconds": {"lm": round(lm_seconds, 1), "total_training": round(train_seconds, 1)},
        "final_loss": losses,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "config": {
            name: dataclasses.asdict(getattr(recipe, name)) for name in ("lm", "memory", "training", "task")
        },
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.info("trained in %.0f s\n%s", train_seconds, format_recall_table(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", required=True, help="folder to write the LM, the memory and the records into"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="sizes and steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and of the training data")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 on a shared 2-core machine)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    result = train(args.out, preset=args.preset, seed=args.seed)
    sys.stdout.write(format_recall_table(result) + "\n")


if __name__ == "__main__":
    main()
