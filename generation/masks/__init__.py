"""Mask sequences from a reference video and a text query: GroundingDINO + SAM2 video tracking (Grounded-SAM-2).

from generation.masks import MaskExtractor
seq = MaskExtractor.from_pretrained().extract("walk.mp4", "person.", redetect_every=20, reverse=True)

Editing, composition, procedural sequences (pure functions on MaskSequence; edit.py, compose.py, synth.py):
from generation.masks import edit
from generation.masks.compose import compose
seq = edit.retime(edit.translate(seq, (10, 0), object_ids=[1]), speed=2)
"""

import lazy_loader

from generation.masks import edit
from generation.masks.compose import Composition, IdMapping, Layer
from generation.masks.synth import MaskTemplate, SyntheticObject, synthesize
from generation.masks.tracking import MatchResult, Track, Tracker, TrackerConfig, mask_iou
from generation.masks.trajectory import FieldError, Trajectory

__all__ = [
    "Composition",
    "Detections",
    "Detector",
    "EncodedFrame",
    "ExtractionSession",
    "FieldError",
    "FrameResult",
    "GroundingDinoDetector",
    "IdMapping",
    "Layer",
    "MaskExtractor",
    "MaskModels",
    "MaskTemplate",
    "MatchResult",
    "PropagatedMasks",
    "Propagator",
    "Sam2VideoPropagator",
    "SyntheticObject",
    "Track",
    "Tracker",
    "TrackerConfig",
    "Trajectory",
    "edit",
    "load_extractor",
    "load_models",
    "mask_iou",
    "normalize_query",
    "synthesize",
    "tiny_models",
]

# The extractor pulls in torch and transformers (seconds to import): load it on first use, so light users
# (editing, the `kmono` command's start-up) don't pay for it.
__getattr__, _, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "extractor": ["ExtractionSession", "FrameResult", "MaskExtractor", "load_extractor"],
        "models": [
            "Detections",
            "Detector",
            "EncodedFrame",
            "GroundingDinoDetector",
            "MaskModels",
            "PropagatedMasks",
            "Propagator",
            "Sam2VideoPropagator",
            "load_models",
            "normalize_query",
            "tiny_models",
        ],
    },
)
