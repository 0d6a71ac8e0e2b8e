"""DCoT against direct answering on the synthetic multi-clip story set: accuracy, mean ± spread over seeds.

    result = dcot_vs_direct(ScriptedReader(), num_stories=20, seeds=(0, 1, 2))
    table = format_table(result)           # reasoning/cli.py prints it

    .venv/bin/python -m generation.dialogue.reasoning.cli --stories 20 --seeds 0 1 2            # scripted
    .venv/bin/python -m generation.dialogue.reasoning.cli --backend gemma --stories 3 --seeds 0  # bundled LM

Both methods see the same clips in the same (story) order and answer with the same generation settings; DCoT's
chains are extracted once per story and reused for its questions (they do not depend on the question). Spread
is the sample standard deviation over seeds (0 with one seed). With `ScriptedReader` the numbers measure the
orchestration, not a language model (see `stories.py`).

Measured (2-core shared CPU; accuracy mean ± sample std over seeds):

| questions | ScriptedReader direct | ScriptedReader DCoT | Gemma 3 270M direct | Gemma 3 270M DCoT |
|---|---|---|---|---|
| order     | 0.450 ± 0.100 | 1.000 ± 0.000 | 0.375 ± 0.000 | 0.125 ± 0.177 |
| episode   | 0.350 ± 0.050 | 1.000 ± 0.000 | 0.062 ± 0.088 | 0.125 ± 0.177 |
| character | 0.150 ± 0.100 | 1.000 ± 0.000 | 0.438 ± 0.088 | 0.312 ± 0.265 |
| all       | 0.317 ± 0.073 | 1.000 ± 0.000 | 0.292 ± 0.000 | 0.188 ± 0.029 |

ScriptedReader: `--stories 20 --seeds 0 1 2` (span 150 words); with `--span 1000` both methods score 1.000 (the
gain is the span's, and the gold answers agree with the text), with `--span 100` 0.239 against 0.906. Gemma (the
bundled base model through llama.cpp): `--backend gemma --stories 8 --seeds 0 1 --max-chain-tokens 96`, about
7 minutes: 68 of its 140 chain steps gave no valid JSON after two retries (it keeps listing sentences past the
token budget) and 14 of 48 DCoT answers came back empty, so at 270M parameters, without instruction tuning, the
chains cost more than they bring; DCoT needs a model that can write the chains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.reasoning.dcot import direct_prompt, dual_chain_of_thought, extract_chains
from generation.dialogue.reasoning.stories import QuestionKind, is_correct, make_stories
from generation.dialogue.reasoning.templates import REPLY_STOP

logger = logging.getLogger(__name__)

METHODS = ("direct", "dcot")
# Chains are JSON lists of a few short sentences; answers are a few words. An answer is the first non-empty line
# of the output (a base model sometimes opens with a line break, which a "\n" stop would turn into no answer).
CHAIN_PARAMS = GenerationParams(max_new_tokens=160, temperature=0.0)
ANSWER_PARAMS = GenerationParams(max_new_tokens=24, temperature=0.0, stop=REPLY_STOP)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _spread(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std}


def run_seed(
    lm: LanguageModel,
    *,
    num_stories: int,
    seed: int,
    chain_params: GenerationParams = CHAIN_PARAMS,
    answer_params: GenerationParams = ANSWER_PARAMS,
) -> dict:
    """Per-question records and accuracies of both methods on the stories of one seed."""
    records = []
    for story in make_stories(num_stories, seed):
        chains = extract_chains(lm, story.clips, params=chain_params)
        for question in story.questions:
            direct = first_line(lm.complete(direct_prompt(question.text, story.clips), answer_params))
            reasoning = dual_chain_of_thought(
                lm, question.text, story.clips, params=chain_params, chains=chains
            )
            dcot = first_line(lm.complete(reasoning.final_prompt, answer_params))
            records.append(
                {
                    "story": story.story_id,
                    "kind": str(question.kind),
                    "question": question.text,
                    "gold": question.gold,
                    "direct": direct,
                    "dcot": dcot,
                    "direct_correct": is_correct(question, direct),
                    "dcot_correct": is_correct(question, dcot),
                    "chain_calls": chains.calls,
                    "chain_failures": len(chains.failures),
                }
            )
        failed = len(chains.failures)
        logger.info(
            "seed %d: story %s done (%d chain calls, %d failed)", seed, story.story_id, chains.calls, failed
        )

    def accuracy(method: str, kind: str | None = None) -> float:
        chosen = [r for r in records if kind is None or r["kind"] == kind]
        return float(np.mean([r[f"{method}_correct"] for r in chosen])) if chosen else float("nan")

    return {
        "seed": seed,
        "questions": len(records),
        **{m: accuracy(m) for m in METHODS},
        "by_kind": {str(k): {m: accuracy(m, str(k)) for m in METHODS} for k in QuestionKind},
        "records": records,
    }


def dcot_vs_direct(
    lm: LanguageModel,
    *,
    num_stories: int,
    seeds: Sequence[int],
    chain_params: GenerationParams = CHAIN_PARAMS,
    answer_params: GenerationParams = ANSWER_PARAMS,
) -> dict:
    """Accuracy of DCoT and of direct answering, overall and per question kind, mean and spread over seeds."""
    runs = [
        run_seed(lm, num_stories=num_stories, seed=s, chain_params=chain_params, answer_params=answer_params)
        for s in seeds
    ]
    return {
        "lm": lm.name,
        "num_stories": num_stories,
        "seeds": list(seeds),
        "questions_per_seed": runs[0]["questions"] if runs else 0,
        **{m: _spread([r[m] for r in runs]) for m in METHODS},
        "by_kind": {
            str(k): {m: _spread([r["by_kind"][str(k)][m] for r in runs]) for m in METHODS}
            for k in QuestionKind
        },
        "runs": runs,
    }


def format_table(result: dict) -> str:
    """A Markdown table: one row per question kind and overall, accuracy mean ± spread per method."""

    def cell(stat: dict) -> str:
        return f"{stat['mean']:.3f} ± {stat['std']:.3f}"

    lines = [
        f"DCoT vs direct answering: {result['lm']}, {result['num_stories']} stories x "
        f"{len(result['seeds'])} seeds ({result['questions_per_seed']} questions per seed)",
        "",
        "| questions | direct | DCoT |",
        "|---|---|---|",
    ]
    for kind, stats in result["by_kind"].items():
        lines.append(f"| {kind} | {cell(stats['direct'])} | {cell(stats['dcot'])} |")
    lines.append(f"| all | {cell(result['direct'])} | {cell(result['dcot'])} |")
    return "\n".join(lines)
