"""Mask sequences from a reference video and a text query: GroundingDINO + SAM2 video tracking (Grounded-SAM-2).

from generation.masks import MaskExtractor
seq = MaskExtractor.from_pretrained().extract("walk.mp4", "person.", redetect_every=20, reverse=True)

Editing, composition, procedural sequences (pure functions on MaskSequence; edit.py, compose.py, synth.py):
from generation.masks import edit
from generation.masks.compose import compose
seq = edit.retime(edit.translate(seq, (10, 0), object_ids=[1]), speed=2)
"""

from generation.masks import edit
from generation.masks.compose import Composition, IdMapping, Layer
from generation.masks.extractor import ExtractionSession, FrameResult, MaskExtractor
from generation.masks.models import (
    Detections,
    Detector,
    EncodedFrame,
    GroundingDinoDetector,
    MaskModels,
    PropagatedMasks,
    Propagator,
    Sam2VideoPropagator,
    load_models,
    normalize_query,
    tiny_models,
)
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
    "load_models",
    "mask_iou",
    "normalize_query",
    "synthesize",
    "tiny_models",
]
