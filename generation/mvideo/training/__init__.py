"""MVideo training: accelerate loop, diffusion + consistency losses, condition dropout, LoRA, manifests.

from generation.mvideo.training import get_recipe, train
train(get_recipe("shapes-default").replace(out="generation/mvideo/shapes/default"))
"""

import lazy_loader

# Loaded on first use: torch and diffusers take seconds to import, and `kmono --help` imports this package.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["RECIPES", "ShapesModelSpec", "TrainConfig", "get_recipe"],
        "data": [
            "ManifestDataset",
            "ManifestEntry",
            "ShapesWorldDataset",
            "StepBatchSampler",
            "collate_examples",
            "read_manifest",
            "write_manifest",
        ],
        "losses": ["consistency_loss", "diffusion_loss", "resolve_teacher", "sample_condition_dropout"],
        "trainer": ["MVideoDenoiser", "TrainResult", "rotary_embeddings", "train"],
    },
)
