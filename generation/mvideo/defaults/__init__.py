"""MVideo's model ids, folders and backend names, in one place and without torch (a leaf package: the
pipelines, the trainer, the engine, the video service's flags, the demo and `kmono models` all read it).

Sampling defaults (fps, steps, guidance) are not here: they are saved with each model folder (`engine.json`,
`engine_file.py`).
"""

from pathlib import Path

SHAPES_DEFAULT_PATH = Path(__file__).resolve().parents[1] / "shapes" / "default"
"""The shapes-world embedded default (a diffusers pipeline folder trained by this project); an absolute path,
so it loads from any working directory."""
COGVIDEOX_MODEL = "THUDM/CogVideoX-2b"
"""The published CogVideoX base an MVideo is fine-tuned from (`kmono mvideo train --init-from`)."""
VACE_MODEL = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
"""Wan2.1-VACE for ENGINE_VACE (`--vace-path`)."""
COGVIDEOX_FPS = 8.0
"""Frame rate of CogVideoX's videos: the fps of a published folder saved without `engine.json`."""
ATTENTION_BACKENDS = ("auto", "sdpa", "xformers")
"""Attention backends a pipeline runs with: auto (xFormers when installed and on CUDA, else PyTorch SDPA)."""
