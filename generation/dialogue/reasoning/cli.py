"""`python -m generation.dialogue.reasoning.cli`: DCoT against direct answering on the synthetic story set.

    .venv/bin/python -m generation.dialogue.reasoning.cli --stories 20 --seeds 0 1 2            # ScriptedReader
    .venv/bin/python -m generation.dialogue.reasoning.cli --backend gemma --stories 3 --seeds 0  # the bundled LM

Prints the table of `evaluate.format_table`; `--json` keeps every question and answer.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace

from generation.dialogue.backends.base import LanguageModel
from generation.dialogue.reasoning.evaluate import ANSWER_PARAMS, CHAIN_PARAMS, dcot_vs_direct, format_table
from generation.dialogue.reasoning.stories import DEFAULT_SPAN_WORDS, ScriptedReader


def _load(backend: str, span_words: int) -> LanguageModel:
    if backend == "scripted":
        return ScriptedReader(span_words)
    from generation.dialogue.backends.registry import load_backend

    return load_backend(backend)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="DCoT against direct answering on synthetic multi-clip stories."
    )
    parser.add_argument(
        "--backend", default="scripted", help="scripted (ScriptedReader) or a registry name (gemma)"
    )
    parser.add_argument("--stories", type=int, default=20, help="stories per seed (3 questions each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="story-set seeds")
    parser.add_argument(
        "--span", type=int, default=DEFAULT_SPAN_WORDS, help="ScriptedReader's attention span in words"
    )
    parser.add_argument("--max-answer-tokens", type=int, default=ANSWER_PARAMS.max_new_tokens)
    parser.add_argument(
        "--max-chain-tokens",
        type=int,
        default=CHAIN_PARAMS.max_new_tokens,
        help="token budget of one chain step",
    )
    parser.add_argument("--json", help="write the full result (with every answer) to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lm = _load(args.backend, args.span)
    answer_params = replace(ANSWER_PARAMS, max_new_tokens=args.max_answer_tokens)
    chain_params = replace(CHAIN_PARAMS, max_new_tokens=args.max_chain_tokens)
    try:
        result = dcot_vs_direct(
            lm,
            num_stories=args.stories,
            seeds=args.seeds,
            chain_params=chain_params,
            answer_params=answer_params,
        )
    finally:
        lm.close()
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
