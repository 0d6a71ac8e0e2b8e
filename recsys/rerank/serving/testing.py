"""A tiny Dual-Rerank model folder for the engine, service, demo and benchmark tests: `new_models(TINY, seed)`
(random weights: every path the service takes is the real one, in milliseconds), saved exactly like a trained
folder."""

from __future__ import annotations

from pathlib import Path

from recsys.rerank.models import TINY, new_models, save_model_folder


def tiny_model_folder(path: str | Path, seed: int = 0) -> str:
    """Write a servable tiny model folder at `path`; returns its version."""
    models = new_models(TINY, seed)
    save_model_folder(Path(path), models)
    return models.version
