"""A picklable description of a `SegmentEncoder`, built once per process (driver or distributed worker).

spec = EncoderSpec(vision_model="openai/clip-vit-base-patch32", asr_model="openai/whisper-small")
encoder = build_encoder(spec)        # memoised: the same spec in the same process -> the same encoder
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from libs.encoders.cache import EmbeddingCache, default_cache_dir
from libs.encoders.frames import FrameEncoder, FrameEncoderConfig
from libs.encoders.segment import SegmentEncoder, SegmentEncoderConfig
from libs.encoders.speech import SpeechConfig, SpeechRecognizer
from libs.encoders.text import TextEncoder, TextEncoderConfig

__all__ = ["EncoderSpec", "build_encoder", "default_cache_dir"]


@dataclass(frozen=True)
class EncoderSpec:
    """Which models and settings make the segment encoder. `tiny=True`: seeded random tiny models (tests)."""

    text_model: str | None = None  # hub id or directory; None = bundled all-MiniLM-L6-v2
    vision_model: str | None = None  # CLIP / SigLIP hub id or directory (required unless tiny)
    asr_model: str | None = None  # Whisper hub id or directory; None = segments must carry transcripts
    tiny: bool = False  # with tiny, any asr_model (e.g. "tiny") adds the tiny Whisper
    segment: SegmentEncoderConfig = field(default_factory=SegmentEncoderConfig)
    language: str | None = None  # Whisper language, e.g. "zh"; None = detect
    device: str | None = "cpu"
    dtype: str = "float32"
    batch_size: int = 16
    cache_dir: str | None = None  # None = no cache

    def __post_init__(self) -> None:
        if not self.tiny and not self.vision_model:
            raise ValueError("vision_model: a CLIP or SigLIP hub id or directory is required (or tiny=True)")


@functools.lru_cache(maxsize=4)
def build_encoder(spec: EncoderSpec) -> SegmentEncoder:
    cache = EmbeddingCache(spec.cache_dir) if spec.cache_dir else None
    if spec.tiny:
        from libs.encoders.testing import tiny_segment_encoder

        return tiny_segment_encoder(config=spec.segment, cache=cache, with_speech=spec.asr_model is not None)
    text = TextEncoder.from_pretrained(
        spec.text_model,
        config=TextEncoderConfig(device=spec.device, dtype=spec.dtype, batch_size=max(spec.batch_size, 32)),
    )
    frames = FrameEncoder.from_pretrained(
        spec.vision_model,  # type: ignore[arg-type]  # checked in __post_init__
        config=FrameEncoderConfig(device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size),
    )
    speech = (
        SpeechRecognizer.from_pretrained(
            spec.asr_model, config=SpeechConfig(language=spec.language, device=spec.device, dtype=spec.dtype)
        )
        if spec.asr_model
        else None
    )
    return SegmentEncoder(text, frames, speech, config=spec.segment, cache=cache)
