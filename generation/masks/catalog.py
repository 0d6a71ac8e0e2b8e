"""The mask extractor's models in the `kmono models` catalogue (entry point `kmono.models`: masks).

Torch-free (`kmono models list` imports it). The ids come from defaults.py, the one place they are written;
the flags and variables are those of `kmono serve masks` (services/masks/config.py) and `kmono masks extract`.
GroundingDINO also needs its tokenizer and image-processor configs (the detector loads `AutoTokenizer` and
`GroundingDinoImageProcessorPil` from the same folder); SAM2 needs only the model (frames are normalised in
models.py, not by a processor).
"""

from generation.masks.defaults import GROUNDING_DINO_MODEL, SAM2_MODEL
from libs.modelstore.catalog import ModelSpec, Use


def models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="grounding-dino",
            source=GROUNDING_DINO_MODEL,
            layout="transformers",
            description="GroundingDINO: open-vocabulary boxes on key frames (mask extraction)",
            uses=(
                Use("kmono serve masks", "--model-grounding", "KMONO_MASKS_GROUNDING_MODEL"),
                Use("kmono serve video", "--model-grounding", "KMONO_VIDEO_GROUNDING_MODEL"),
                Use("kmono masks extract", "--model-grounding"),
                Use("kmono mvideo annotate", "--grounding-dino"),
            ),
            requires=("preprocessor_config.json", "tokenizer_config.json"),
        ),
        ModelSpec(
            name="sam2",
            source=SAM2_MODEL,
            layout="transformers",
            description="SAM2: video mask propagation (mask extraction)",
            uses=(
                Use("kmono serve masks", "--model-sam2", "KMONO_MASKS_SAM2_MODEL"),
                Use("kmono serve video", "--model-sam2", "KMONO_VIDEO_SAM2_MODEL"),
                Use("kmono masks extract", "--model-sam2"),
                Use("kmono mvideo annotate", "--sam2"),
            ),
        ),
    ]
