"""A pipeline folder's sampling defaults, saved beside its weights as `engine.json`: fps, num_inference_steps,
guidance_scale. The trainer writes it when it exports a folder; the video engine reads it to fill what a request
leaves out. A published folder without one takes the pipeline's own call defaults (the engine loader passes them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENGINE_FILE = "engine.json"
SAMPLING_KEYS = ("fps", "num_inference_steps", "guidance_scale")


def save_engine_defaults(
    path: str | os.PathLike[str], *, fps: float, num_inference_steps: int, guidance_scale: float
) -> None:
    values = {"fps": fps, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    Path(path, ENGINE_FILE).write_text(json.dumps(values, indent=2) + "\n")


def read_engine_defaults(path: str | os.PathLike[str]) -> dict | None:
    """The folder's saved sampling defaults; None when it has no `engine.json` (or `path` is a hub id)."""
    file = Path(path, ENGINE_FILE)
    if not file.is_file():
        return None
    values = json.loads(file.read_text())
    missing = [key for key in SAMPLING_KEYS if key not in values]
    if missing:
        raise ValueError(f"{file} lacks {', '.join(missing)}; it needs {', '.join(SAMPLING_KEYS)}")
    return values
