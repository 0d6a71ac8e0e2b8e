"""MVideo training: accelerate loop, diffusion + consistency losses, condition dropout, LoRA, manifests.

from generation.mvideo.training import get_recipe, train
train(get_recipe("shapes-default").replace(out="generation/mvideo/shapes/default"))
"""

import importlib

# Loaded on first use: torch and diffusers take seconds to import, and `kmono --help` imports this package.
_LAZY = {
    "RECIPES": "generation.mvideo.training.config",
    "ShapesModelSpec": "generation.mvideo.training.config",
    "TrainConfig": "generation.mvideo.training.config",
    "get_recipe": "generation.mvideo.training.config",
    "ManifestDataset": "generation.mvideo.training.data",
    "ManifestEntry": "generation.mvideo.training.data",
    "ShapesWorldDataset": "generation.mvideo.training.data",
    "StepBatchSampler": "generation.mvideo.training.data",
    "collate_examples": "generation.mvideo.training.data",
    "read_manifest": "generation.mvideo.training.data",
    "write_manifest": "generation.mvideo.training.data",
    "consistency_loss": "generation.mvideo.training.losses",
    "diffusion_loss": "generation.mvideo.training.losses",
    "resolve_teacher": "generation.mvideo.training.losses",
    "sample_condition_dropout": "generation.mvideo.training.losses",
    "MVideoDenoiser": "generation.mvideo.training.trainer",
    "TrainResult": "generation.mvideo.training.trainer",
    "rotary_embeddings": "generation.mvideo.training.trainer",
    "train": "generation.mvideo.training.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
