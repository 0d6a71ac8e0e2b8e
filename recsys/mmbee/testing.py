"""A tiny trained MMBee model folder for the engine, service and demo tests: the tiny world, one short epoch,
exported exactly like the embedded default (so every path the service takes is the real one)."""

from __future__ import annotations

from pathlib import Path

from recsys.data.world import WORLD_PRESETS
from recsys.mmbee.pipeline import ModelOptions, evaluate, fit_for_serving, prepare, save_model_folder
from recsys.mmbee.training import TrainConfig
from recsys.mmbee.training.cold_start import ColdStartConfig

TINY_OPTIONS = ModelOptions(extra={"embedding_dim": 16, "hidden_dim": 16, "sim_top_k": 8})


def tiny_model_folder(
    out_dir: str | Path, *, backbone: str = "sim", seed: int = 0, max_steps: int = 20
) -> str:
    """Train on the tiny world for `max_steps` steps and write a servable folder; returns its version."""
    out_dir = Path(out_dir)
    prepared = prepare(WORLD_PRESETS["tiny"], out_dir.parent / f"{out_dir.name}-work", history=16)
    options = ModelOptions(**{**TINY_OPTIONS.__dict__, "backbone": backbone})
    config = TrainConfig(epochs=1, batch_size=128, seed=seed, progress=False, max_steps=max_steps)
    model, _ = fit_for_serving(
        prepared, options, config, ColdStartConfig(steps=20, batch_size=256, progress=False)
    )
    return save_model_folder(out_dir, model, prepared, evaluate(model, prepared.test, prepared.train_gifts))
