"""Quality gate of the committed memory default (`python -m generation.dialogue.memory.train --out
generation/dialogue/memory/default`): on a fresh held-out set (a seed none of eval.json used; held-out statement
templates), recall of out-of-window facts with the memory is at least 0.8 and at least 3x the recall of the window
alone (issue 14), with fewer prompt positions than the whole history. The test states the bar, not a record of
what was reached (that is `default/eval.json`).
"""

from generation.dialogue.memory.evaluate import DEFAULT_DIR, memory_recall


def test_committed_default_recalls_out_of_window_facts():
    result = memory_recall(DEFAULT_DIR, num_dialogues=60, seeds=(7001,))
    with_memory, window_only = result["with_memory"]["recall_mean"], result["window_only"]["recall_mean"]
    assert result["questions"] >= 50, result
    assert with_memory >= 0.8, result
    assert with_memory >= 3 * window_only, result
    assert result["with_memory"]["prompt_tokens_mean"] < result["whole_history"]["prompt_tokens_mean"]
