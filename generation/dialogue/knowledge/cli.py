"""`python -m generation.dialogue.knowledge.cli`: the knowledge Q&A table, the dev-calibrated thresholds
(`--calibrate`) or the fusion choice (`--retrieval`); see `evaluate.py`. `kmono dialogue eval` prints the same table."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from generation.dialogue.knowledge.answer import GroundedAnswerer
from generation.dialogue.knowledge.evaluate import (
    DEFAULT_SESSIONS,
    SYSTEMS,
    calibrate_thresholds,
    format_knowledge_table,
    knowledge_qa_eval,
    retrieval_accuracy,
)
from generation.dialogue.knowledge.qa_set import DEV_SEEDS, TEST_SEEDS


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--num-sessions", type=int, default=DEFAULT_SESSIONS)
    parser.add_argument("--calibrate", action="store_true", help="print each mode's dev-calibrated threshold")
    parser.add_argument(
        "--retrieval", action="store_true", help="print top-1 passage accuracy per fusion on dev"
    )
    parser.add_argument("--json", type=str, default="", help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from libs.encoders import TextEncoder

    encoder = TextEncoder.from_pretrained()
    if args.retrieval:
        accuracy = retrieval_accuracy(
            encoder,
            weights=(0.0, 0.2, 0.5, 0.8, 0.9, 1.0),
            seeds=args.seeds or DEV_SEEDS,
            num_sessions=args.num_sessions,
        )
        print(json.dumps(accuracy, indent=1))  # noqa: T201 - the command line prints its result
        return
    if args.calibrate:
        seeds = args.seeds or DEV_SEEDS
        thresholds = {
            mode: calibrate_thresholds(
                GroundedAnswerer(encoder, retrieval=mode), seeds=seeds, num_sessions=args.num_sessions
            )
            for mode in SYSTEMS
        }
        print(json.dumps(thresholds, indent=1))  # noqa: T201 - the command line prints its result
        return
    report = knowledge_qa_eval(
        GroundedAnswerer(encoder), seeds=args.seeds or TEST_SEEDS, num_sessions=args.num_sessions
    )
    print(format_knowledge_table(report))  # noqa: T201 - the command line prints its result
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
