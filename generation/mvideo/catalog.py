"""MVideo's models in the `kmono models` catalogue (entry point `kmono.models`: mvideo).

Torch-free (`kmono models list` imports it). The ids and the embedded default's path come from defaults.py, the
one place they are written; the flags and variables are those of `kmono serve video` (services/video/config.py)
and `kmono mvideo train`.

- `mvideo`: the MVideo pipeline the video service serves (`--engine-path`). Its default source is the embedded
  shapes-world model, so it stages with no network; stage a fine-tuned MVideo under the same name
  (`kmono models pull runs/ft/final --name mvideo`).
- `cogvideox`: the published CogVideoX an MVideo is fine-tuned from (`kmono mvideo train --init-from`); the
  service does not load it directly (an MVideo folder also holds the mask encoder).
- `wan-vace`: Wan2.1-VACE for ENGINE_VACE (`--vace-path`); its pipeline needs `ftfy` at run time, which is a
  dependency of this project.
"""

from generation.mvideo.defaults import COGVIDEOX_MODEL, SHAPES_DEFAULT_PATH, VACE_MODEL
from libs.modelstore.catalog import ModelSpec, Use


def models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="mvideo",
            source=SHAPES_DEFAULT_PATH,
            layout="diffusers",
            description="MVideo pipeline served by the video service (default: the embedded shapes-world model)",
            uses=(
                Use("kmono serve video", "--engine-path", "KMONO_VIDEO_ENGINE_PATH"),
                Use("kmono video generate --local", "--engine-path"),
            ),
        ),
        ModelSpec(
            name="cogvideox",
            source=COGVIDEOX_MODEL,
            layout="diffusers",
            description="CogVideoX base that an MVideo is fine-tuned from",
            uses=(Use("kmono mvideo train", "--init-from"),),
        ),
        ModelSpec(
            name="wan-vace",
            source=VACE_MODEL,
            layout="diffusers",
            description="Wan2.1-VACE pipeline for ENGINE_VACE requests of the video service",
            uses=(Use("kmono serve video", "--vace-path", "KMONO_VIDEO_VACE_PATH"),),
        ),
    ]
