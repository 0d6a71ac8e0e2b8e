"""`kmono dialogue ...`: KuaiMM's offline commands — the evaluation, and training the Contextformer memory.

kmono dialogue eval --out-dir out/dialogue-eval        # knowledge Q&A, memory recall, DCoT vs direct (+ JSON, PNG)
kmono dialogue eval --parts dcot --backend gemma --stories 3 --seeds 0    # DCoT with the bundled Gemma
kmono dialogue train-memory --out generation/dialogue/memory/default     # the committed memory (~CPU-minutes)

Chatting is `kmono chat` (a client of the DialogueService, or `--local`); serving is `kmono serve dialogue`.

What `eval` measures (each part: mean ± std over seeds, held-out data the models never saw):
- knowledge: a bilingual (English, Chinese) Q&A set over product details and live streams the project writes,
  answerable and unanswerable: exact match, token F1 and abstention accuracy of the embedded default (hybrid
  retrieval + extractive answers), beside lexical-only and dense-only retrieval;
- memory: recall of facts that left the LM's context window, with the trained Contextformer memory, without
  it, and with the whole history in the prompt (and the prompt tokens each needs);
- dcot: dual chain-of-thought against direct answering on synthetic multi-clip stories (order and character
  questions), with the scripted reader (the orchestration) or any backend (`--backend`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from libs.cli.main import add_subcommand

logger = logging.getLogger(__name__)

PARTS = ("knowledge", "memory", "dcot")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dialogue",
        help="KuaiMM dialogue: evaluate (knowledge Q&A, memory, DCoT), train the Contextformer memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="dialogue_command", metavar="COMMAND", required=True)

    evaluate = add_subcommand(
        commands,
        "eval",
        "knowledge Q&A (EM/F1/abstention), out-of-window memory recall, DCoT vs direct; tables, JSON and a PNG",
        "  kmono dialogue eval --out-dir out/dialogue-eval\n"
        "  kmono dialogue eval --parts dcot --backend gemma --stories 3 --seeds 0\n",
    )
    evaluate.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to evaluate")
    evaluate.add_argument(
        "--seeds", nargs="+", type=int, default=None,
        help="evaluation seeds (default: each part's held-out seeds, three of them)",
    )  # fmt: skip
    evaluate.add_argument(
        "--sessions", type=int, default=12, help="knowledge: sessions per seed (14 questions each)"
    )
    evaluate.add_argument("--dialogues", type=int, default=200, help="memory: held-out dialogues per seed")
    evaluate.add_argument(
        "--memory-model", type=Path, default=None,
        help="memory: a folder written by `kmono dialogue train-memory` (default: the committed one)",
    )  # fmt: skip
    evaluate.add_argument("--stories", type=int, default=20, help="dcot: stories per seed (3 questions each)")
    evaluate.add_argument(
        "--backend", default="scripted",
        help="dcot: `scripted` (a reader with a limited attention span: measures the orchestration) or a "
        "backend spec (`gemma`, `hf:DIR`, `openai:URL#MODEL`; see `kmono serve dialogue --help`)",
    )  # fmt: skip
    evaluate.add_argument("--out-dir", type=Path, default=Path("out/dialogue-eval"), help="JSON + PNG")
    evaluate.set_defaults(func=_eval)

    train = add_subcommand(
        commands,
        "train-memory",
        "train the tiny LM and its Contextformer memory on the synthetic long-dialogue task",
        "  kmono dialogue train-memory --out generation/dialogue/memory/default\n"
        "  kmono dialogue train-memory --preset tiny --out /tmp/memory\n",
    )
    train.add_argument("--out", type=Path, required=True, help="model folder to write")
    train.add_argument(
        "--preset", default="default", help="`default` (the committed model) or `tiny` (seconds)"
    )
    train.add_argument("--seed", type=int, default=0, help="seeds initialisation and the training dialogues")
    train.set_defaults(func=_train_memory)


def _eval(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    if "knowledge" in args.parts:
        from generation.dialogue.knowledge.answer import GroundedAnswerer
        from generation.dialogue.knowledge.evaluate import (
            TEST_SEEDS,
            format_knowledge_table,
            knowledge_qa_eval,
        )
        from libs.encoders import TextEncoder

        answerer = GroundedAnswerer(TextEncoder.from_pretrained())
        seeds = args.seeds or list(TEST_SEEDS)
        report["knowledge"] = knowledge_qa_eval(answerer, seeds=seeds, num_sessions=args.sessions)
        print("\n## Knowledge-grounded Q&A (held-out)\n")  # noqa: T201 - the command prints its tables
        print(format_knowledge_table(report["knowledge"]))  # noqa: T201
    if "memory" in args.parts:
        from generation.dialogue.memory.evaluate import (
            DEFAULT_DIR,
            DEFAULT_SEEDS,
            format_recall_table,
            memory_recall,
        )

        seeds = tuple(args.seeds or DEFAULT_SEEDS)
        model_dir = args.memory_model or DEFAULT_DIR
        if not (Path(model_dir) / "memory_config.json").is_file():
            raise SystemExit(
                f"no trained memory in {model_dir}: train one with `kmono dialogue train-memory --out "
                f"{model_dir}`, or pass --memory-model DIR, or leave memory out (--parts knowledge dcot)"
            )
        report["memory"] = memory_recall(model_dir, num_dialogues=args.dialogues, seeds=seeds)
        print("\n## Contextformer memory: recall of out-of-window facts\n")  # noqa: T201
        print(format_recall_table(report["memory"]))  # noqa: T201
    if "dcot" in args.parts:
        from generation.dialogue.reasoning.evaluate import dcot_vs_direct, format_table

        lm = _story_reader(args.backend)
        try:
            report["dcot"] = dcot_vs_direct(lm, num_stories=args.stories, seeds=args.seeds or [0, 1, 2])
        finally:
            lm.close()
        print("\n## Dual chain-of-thought vs direct answering\n")  # noqa: T201
        print(format_table(report["dcot"]))  # noqa: T201
    (args.out_dir / "dialogue_eval.json").write_text(json.dumps(report, indent=1, default=str))
    png = args.out_dir / "dialogue_eval.png"
    _plot(report, png)
    print(f"\nwrote {args.out_dir / 'dialogue_eval.json'} and {png}")  # noqa: T201
    return 0


def _story_reader(backend: str):
    if backend == "scripted":
        from generation.dialogue.reasoning.stories import ScriptedReader

        return ScriptedReader()
    from generation.dialogue.backends.registry import load_backend

    lm = load_backend(backend)
    if lm is None:
        raise SystemExit(
            "--backend none has no language model to reason with; use `scripted` or a model spec"
        )
    return lm


def _plot(report: dict, path: Path) -> None:
    """One panel per evaluated part: bars of the headline metric with the spread over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "knowledge" in report:
        systems = report["knowledge"]["systems"]
        panels.append(
            (
                "knowledge Q&A: token F1",
                [f"{name}\n{lang}" for name in systems for lang in ("en", "zh")],
                [systems[name][lang]["f1"] for name in systems for lang in ("en", "zh")],
            )
        )
    if "memory" in report:
        from generation.dialogue.memory.evaluate import READERS

        memory = report["memory"]
        panels.append(
            (
                "out-of-window recall",
                [r.replace("_", "\n") for r in READERS],
                [{"mean": memory[r]["recall_mean"], "std": memory[r]["recall_std"]} for r in READERS],
            )
        )
    if "dcot" in report:
        panels.append(
            (f"story questions: accuracy ({report['dcot']['lm']})", ["direct", "DCoT"],
             [report["dcot"]["direct"], report["dcot"]["dcot"]])
        )  # fmt: skip
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, labels, stats) in zip(axes[0], panels, strict=True):
        ax.bar(labels, [s["mean"] for s in stats], yerr=[s["std"] for s in stats], capsize=4, color="#4c72b0")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _train_memory(args: argparse.Namespace) -> int:
    from generation.dialogue.memory.evaluate import format_recall_table
    from generation.dialogue.memory.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = train(args.out, preset=args.preset, seed=args.seed)
    if "recall" in result:
        print(format_recall_table(result["recall"]))  # noqa: T201 - the command prints its result
    print(f"wrote {args.out}")  # noqa: T201
    return 0
