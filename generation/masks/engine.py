"""The mask extraction engine a service keeps warm: `MaskEngine.extract(job, on_frame)`.

    engine = load_mask_engine(tiny=False)                       # GroundingDINO + SAM2, once per process
    seq = engine.extract(ExtractionJob(video="walk.mp4", query="person."), on_frame)

`ExtractionJob` is the domain form of an extraction request (the mask service's ExtractMasks and the video
service's reference videos both build one); `extract` runs `MaskExtractor.extract` (so its argument checks
apply), calls `on_frame(frames_done, total_frames_or_None, objects_seen)` after every frame (it may raise to
stop the job: cancellation, shutdown, deadline) and keeps the `max_objects` best-scored objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from generation.masks import edit
from generation.masks.defaults import (
    BOX_THRESHOLD,
    GROUNDING_DINO_MODEL,
    MERGE_IOU,
    REDETECT_EVERY,
    SAM2_MODEL,
    TEXT_THRESHOLD,
    WINDOW,
)
from libs.media import MaskSequence
from libs.media.refs import local_file

logger = logging.getLogger(__name__)

FrameCallback = Callable[[int, int | None, int], None]
"""on_frame(frames_done, total_frames or None, objects_seen); may raise to stop the extraction."""


@dataclass(frozen=True)
class ExtractionJob:
    """One extraction: the objects `query` names in `video`, tracked over every frame."""

    video: bytes | str
    """The video's bytes, or the path of a local file."""
    query: str
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
    merge_iou: float = MERGE_IOU
    redetect_every: int | None = REDETECT_EVERY
    """Frames between key-frame re-detections; None: detect on the first frame only."""
    reverse: bool = False
    max_objects: int | None = None
    """Keep at most this many objects (highest scores first); None: all."""


@dataclass
class MaskEngine:
    """A loaded `MaskExtractor` and the SAM2 window it runs with."""

    extractor: Any
    window: int | None = WINDOW

    def extract(self, job: ExtractionJob, on_frame: FrameCallback | None = None) -> MaskSequence:
        extractor = self.extractor
        if job.merge_iou != extractor.tracker_config.iou_threshold:
            config = replace(extractor.tracker_config, iou_threshold=job.merge_iou)
            extractor = type(extractor)(extractor.detector, extractor.propagator, tracker_config=config)
        seen: set[int] = set()

        def frame_done(done: int, total: int | None, result: Any) -> None:
            seen.update(result.object_ids)
            if on_frame is not None:
                on_frame(done, total, len(seen))

        with local_file(job.video, prefix="kmono-masks-") as path:
            seq = extractor.extract(
                path,
                job.query,
                box_threshold=job.box_threshold,
                text_threshold=job.text_threshold,
                redetect_every=job.redetect_every,
                window=self.window,
                reverse=job.reverse,
                on_frame=frame_done,
            )
        return edit.keep_best_objects(seq, job.max_objects)


def load_mask_engine(
    *,
    tiny: bool = False,
    grounding_model: str = GROUNDING_DINO_MODEL,
    sam2_model: str = SAM2_MODEL,
    device: str | None = None,
    dtype: str = "auto",
    torch_threads: int = 0,
    window: int | None = WINDOW,
) -> MaskEngine:
    """Load the extractor's models once (tiny random ones, or `from_pretrained` hub ids / local directories)."""
    from generation.masks.extractor import load_extractor

    extractor = load_extractor(
        tiny=tiny,
        grounding=grounding_model,
        sam2=sam2_model,
        device=device,
        dtype=dtype,
        threads=torch_threads,
    )
    logger.info("loaded the mask extractor (%s)", "tiny" if tiny else f"{grounding_model} + {sam2_model}")
    return MaskEngine(extractor, window=window or None)
