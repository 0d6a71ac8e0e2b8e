"""The shapes world: captioned synthetic videos of coloured shapes with exact masks, and the tiny MVideo trained
on it (the embedded default under generation/mvideo/shapes/default).

    from generation.mvideo.shapes import ShapesWorld, load_shapes_default, SHAPES_SAMPLING
    sample = ShapesWorld().sample(0, split="eval")
    pipe = load_shapes_default()
    frames = pipe(sample.caption, mask_video=sample.slot_masks(3)[None].astype("float32"), **SHAPES_SAMPLING).frames
"""

import lazy_loader

# Loaded on first use: torch and diffusers take seconds to import, and `kmono --help` imports this package.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "components": ["PixelSpaceAutoencoder", "ShapesTextEncoder", "build_tokenizer"],
        "evaluation": ["EvalConfig", "EvalReport", "evaluate", "save_grid"],
        "model": ["DEFAULT_DIR", "build_shapes_pipeline", "load_shapes_default"],
        "spec": ["SHAPES_SAMPLING", "ShapesModelSpec"],
        "world": ["COLORS", "SHAPES", "ShapeObject", "ShapesSample", "ShapesWorld", "caption_for"],
    },
)
