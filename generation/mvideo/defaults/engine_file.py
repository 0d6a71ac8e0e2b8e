"""A pipeline folder's sampling defaults, saved beside its weights as `engine.json`: fps, num_inference_steps,
guidance_scale, and optionally `text_only` (`TEXT_ONLY_MODES`: how a request without masks is answered). The
trainer writes it when it exports a folder; the video engine reads it to fill what a request leaves out. A
published folder without one takes the pipeline's own call defaults (the engine loader passes them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENGINE_FILE = "engine.json"
SAMPLING_KEYS = ("fps", "num_inference_steps", "guidance_scale")
TEXT_ONLY_MODEL, TEXT_ONLY_LAYOUT = "model", "layout"
TEXT_ONLY_MODES = (TEXT_ONLY_MODEL, TEXT_ONLY_LAYOUT)
"""How an engine answers a request without masks: "model" runs the model's own text-only branch (the mask
condition dropped; the default); "layout" first plans a layout from the prompt (`generation.mvideo.shapes.layout`)."""


def save_engine_defaults(
    path: str | os.PathLike[str],
    *,
    fps: float,
    num_inference_steps: int,
    guidance_scale: float,
    text_only: str = TEXT_ONLY_MODEL,
) -> None:
    _check_text_only(text_only, path)
    values = {"fps": fps, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    if text_only != TEXT_ONLY_MODEL:
        values["text_only"] = text_only
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
    _check_text_only(values.get("text_only", TEXT_ONLY_MODEL), file)
    return values


def _check_text_only(mode: str, where: object) -> None:
    if mode not in TEXT_ONLY_MODES:
        raise ValueError(f"{where}: text_only must be one of {', '.join(TEXT_ONLY_MODES)}, got {mode!r}")
