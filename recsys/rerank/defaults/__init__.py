"""Where the embedded default Dual-Rerank model folder lives (torch-free, so configs and CLIs import it cheaply).

`kmono serve rerank` serves this folder unless `--model` names others."""

from pathlib import Path

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model"
