"""Where the embedded default Dual-Rerank model folder lives (torch-free, so configs and CLIs import it cheaply).

`kmono serve rerank` serves this folder unless `--model` names others. It is reproduced by
`kmono rerank train --out recsys/rerank/defaults/model` (seed 0; about 14 minutes on one CPU thread): simulator
logs, evaluator, AR teacher, SKD student, LDRO (`recsys/rerank/pipeline.py`); `stages/skd` keeps the student before
LDRO for `kmono rerank eval`."""

from pathlib import Path

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model"
