"""The shapes world: captioned synthetic videos of coloured shapes with exact masks, and the tiny MVideo trained
on it (the embedded default under generation/mvideo/shapes/default).

    from generation.mvideo.shapes import ShapesWorld, load_shapes_default, SHAPES_SAMPLING
    sample = ShapesWorld().sample(0, split="eval")
    pipe = load_shapes_default()
    frames = pipe(sample.caption, mask_video=sample.slot_masks(3)[None].astype("float32"), **SHAPES_SAMPLING).frames
"""

import importlib

# Loaded on first use: torch and diffusers take seconds to import, and `kmono --help` imports this package.
_LAZY = {
    "PixelSpaceAutoencoder": "generation.mvideo.shapes.components",
    "ShapesTextEncoder": "generation.mvideo.shapes.components",
    "build_tokenizer": "generation.mvideo.shapes.components",
    "EvalConfig": "generation.mvideo.shapes.evaluation",
    "EvalReport": "generation.mvideo.shapes.evaluation",
    "evaluate": "generation.mvideo.shapes.evaluation",
    "save_grid": "generation.mvideo.shapes.evaluation",
    "DEFAULT_DIR": "generation.mvideo.shapes.model",
    "SHAPES_SAMPLING": "generation.mvideo.shapes.spec",
    "ShapesModelSpec": "generation.mvideo.shapes.spec",
    "build_shapes_pipeline": "generation.mvideo.shapes.model",
    "load_shapes_default": "generation.mvideo.shapes.model",
    "COLORS": "generation.mvideo.shapes.world",
    "SHAPES": "generation.mvideo.shapes.world",
    "ShapeObject": "generation.mvideo.shapes.world",
    "ShapesSample": "generation.mvideo.shapes.world",
    "ShapesWorld": "generation.mvideo.shapes.world",
    "caption_for": "generation.mvideo.shapes.world",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
