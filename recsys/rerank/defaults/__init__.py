"""Where the embedded default Dual-Rerank model folder lives (torch-free, so configs and CLIs import it cheaply).

`kmono serve rerank` serves this folder unless `--model` names others. It is reproduced, bit for bit on one CPU
thread, by `OMP_NUM_THREADS=1 kmono rerank train --out recsys/rerank/defaults/model` (seed 0 and `PipelineConfig()`,
which holds its recipe: a two-block AR teacher, a one-block NAR student; 13 min 58 s of CPU on a 2-core machine
with one other job running, 14 min 47 s with both cores busy): simulator logs, evaluator, AR teacher, SKD student,
LDRO (`recsys/rerank/pipeline.py`); `stages/skd` keeps the student before LDRO for `kmono rerank eval`.

Its figures (`kmono rerank eval --parts simulator`, n = 8, m = 4, column / grid, % of the brute-force optimum):
teacher 95.7 / 95.2, student after SKD 95.6 / 95.1, after LDRO (served) 95.8 / 95.7, score-and-sort 84.7 / 84.5."""

from pathlib import Path

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model"
