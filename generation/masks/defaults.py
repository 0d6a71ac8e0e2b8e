"""The mask extractor's defaults, in one place and without torch: model ids, detection and merge thresholds.

The extractor (`extractor.py`, `models.py`), `kmono masks`, the mask service's flags, the video engine's
reference-video extraction and `kmono models` all read them from here.
"""

GROUNDING_DINO_MODEL = "IDEA-Research/grounding-dino-tiny"
"""GroundingDINO hub id (open-vocabulary boxes on key frames); a local directory works too."""
SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
"""SAM2 hub id (video mask propagation); a local directory works too."""
BOX_THRESHOLD = 0.35
"""Detection confidence a box needs (GroundingDINO's README value)."""
TEXT_THRESHOLD = 0.25
"""Label confidence a phrase needs (GroundingDINO's README value)."""
MERGE_IOU = 0.5
"""Mask IoU above which a re-detection is the same object as a track (ID merge)."""
REDETECT_EVERY = 20
"""Frames between key-frame re-detections (new objects entering the video)."""
WINDOW = 100
"""Frames per SAM2 session (bounded memory on long videos)."""
