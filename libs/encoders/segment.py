"""A live-stream or short-video segment -> the three modality sequences MMBee fuses (X_v, X_s, X_t).

    encoder = SegmentEncoder(text=TextEncoder.from_pretrained(), frames=FrameEncoder.from_pretrained(...),
                             speech=SpeechRecognizer.from_pretrained(...))          # speech is optional
    encoder.dims            # SegmentDims: fixed lengths and widths, to build models against
    seg = Segment(id="live42/0007", video="live42.mp4", start=210.0, end=240.0,
                  comments=("so cute", "where is this?"))
    out = encoder.encode(seg)          # SegmentEncoding
    out.x_v, out.x_s, out.x_t          # (k, D_v), (L_s, D_t), (L_t, D_t) float32, zero-padded
    out.visual_mask, ...               # (k,), (L_s,), (L_t,) bool
    out.visual_pooled, out.speech_pooled, out.comment_pooled

Our choices (MMBee, KDD 2024, describes per-segment frame, speech and comment sequences; the exact
extraction is not public):

- **X_v**: k frames per segment (default 3, as MMBee samples), at the centres of k equal parts of the
  segment (`uniform_frame_indices`); each frame is one token, its pooled CLIP/SigLIP embedding
  (`visual_tokens="frame"`, X_v is (k, D_v)), or all its patch tokens (`visual_tokens="patch"`, X_v is
  (k * P, H), frame-major).
- **X_s**: the tokens of the segment's transcript, encoded by the text encoder (special tokens included),
  cut at `speech_tokens` and zero-padded to it. The transcript is the one the segment carries, else Whisper's
  transcript of its audio (or of the video's audio track when a recognizer is configured).
- **X_t**: the tokens of the segment's comments, in the given (time) order, joined with the tokenizer's
  separator (` [SEP] ` for BERT-like models), cut at `comment_tokens` (the earliest comments are kept) and
  zero-padded.
- **Pooled**: the mean of the k frame embeddings (re-normalised when the frame encoder normalises); the
  sentence embeddings of the transcript and of the joined comments, pooled over the same tokens as X_s/X_t.
- A missing modality (no frames, silence, no comments) is all zeros with an all-False mask; a segment with
  nothing at all is an `EmptyInputError`.
- Outputs are cached per segment *content* (pixels or file bytes, time range, texts, audio), not per id:
  the same clip under another id is a hit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from libs.encoders.base import Encoder
from libs.encoders.cache import CacheEntry, EmbeddingCache, content_digest, file_digest
from libs.encoders.errors import DecodeError, EmptyInputError, InputTypeError
from libs.encoders.frames import FrameEncoder, as_rgb_frame, as_rgb_frames, uniform_frame_indices
from libs.encoders.speech import WHISPER_SAMPLING_RATE, SpeechRecognizer
from libs.encoders.text import TextEncoder
from libs.encoders.video import read_audio, sample_segment_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """One segment of a live stream or short video. Give frames *or* a video (+ time range), optionally a
    transcript *or* audio (the transcript wins when both are set), and comments in time order."""

    id: str
    frames: Any = None  # (T, H, W, 3) uint8, or a sequence of arrays / PIL images / image paths
    video: str | os.PathLike[str] | None = None
    start: float | None = None  # seconds into `video` (and into `audio` when it is a file)
    end: float | None = None
    transcript: str | None = None
    audio: np.ndarray | str | os.PathLike[str] | None = None  # mono waveform or an audio/video file
    sampling_rate: int = WHISPER_SAMPLING_RATE  # of `audio` when it is a waveform
    comments: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputTypeError("id", f"expected a non-empty string, got {self.id!r}")
        if isinstance(self.comments, str):
            raise InputTypeError("comments", "expected a sequence of strings, got one str")
        object.__setattr__(self, "comments", tuple(self.comments))
        if isinstance(self.frames, str | os.PathLike | Image.Image):
            object.__setattr__(self, "frames", (self.frames,))
        elif isinstance(self.frames, list):
            object.__setattr__(self, "frames", tuple(self.frames))
        if self.frames is not None and not isinstance(self.frames, np.ndarray | tuple):
            raise InputTypeError(
                "frames", f"expected an array, images or image paths, got {type(self.frames).__name__}"
            )
        if self.audio is not None and not isinstance(self.audio, np.ndarray | str | os.PathLike):
            raise InputTypeError(
                "audio", f"expected a waveform array or a file path, got {type(self.audio).__name__}"
            )
        for i, comment in enumerate(self.comments):
            if not isinstance(comment, str):
                raise InputTypeError(f"comments[{i}]", f"expected a str, got {type(comment).__name__}")
        if self.transcript is not None and not isinstance(self.transcript, str):
            raise InputTypeError("transcript", f"expected a str, got {type(self.transcript).__name__}")
        if self.frames is not None and self.video is not None:
            raise InputTypeError("frames", "give frames or a video, not both")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
            ):
                raise InputTypeError(name, f"expected seconds as a number, got {value!r}")
            if value is not None and value < 0:
                raise InputTypeError(name, f"must be >= 0, got {value}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise EmptyInputError("end", f"empty time range [{self.start}, {self.end})")
        if self.frames is not None and _is_empty_frames(self.frames):
            raise EmptyInputError("frames", "no frames given (omit the field for a segment without frames)")
        if self.is_empty:
            raise EmptyInputError(
                "segment", f"segment {self.id!r} has no frames, video, transcript, audio or comments"
            )

    @property
    def is_empty(self) -> bool:
        return (
            self.frames is None
            and self.video is None
            and not (self.transcript or "").strip()
            and self.audio is None
            and not any(c.strip() for c in self.comments)
        )

    def content_digest(self) -> str:
        """Digest of everything that determines the encoding (pixels / file bytes, range, texts, audio)."""
        if self.frames is None:
            frames_part = None
        elif isinstance(self.frames, np.ndarray):
            frames_part = self.frames
        else:
            frames_part = [_item_digest(f, f"frames[{i}]") for i, f in enumerate(self.frames)]
        video_part = None if self.video is None else _path_digest(self.video, "video")
        if isinstance(self.audio, np.ndarray):
            audio_part: Any = (self.audio, self.sampling_rate)
        elif self.audio is not None:
            audio_part = _path_digest(self.audio, "audio")
        else:
            audio_part = None
        return content_digest(
            {
                "frames": frames_part,
                "video": video_part,
                "range": [self.start, self.end],
                "transcript": self.transcript,
                "audio": None if self.transcript is not None else audio_part,
                "comments": list(self.comments),
            }
        )


def _is_empty_frames(frames: Any) -> bool:
    if isinstance(frames, np.ndarray):
        return frames.size == 0
    if isinstance(frames, str | os.PathLike):
        return False
    try:
        return len(frames) == 0
    except TypeError:
        return False


def _path_digest(path: str | os.PathLike[str], name: str) -> str:
    try:
        return file_digest(path)
    except FileNotFoundError:
        raise DecodeError(name, f"no such file: {path}") from None
    except OSError as exc:
        raise DecodeError(name, f"cannot read {path}: {exc}") from None


def _item_digest(item: Any, name: str) -> Any:
    if isinstance(item, str | os.PathLike):
        return _path_digest(item, name)
    if isinstance(item, np.ndarray):
        return item
    return as_rgb_frame(item, field=name)  # PIL images: hash the pixels


@dataclass(frozen=True)
class SegmentEncoderConfig:
    frames_per_segment: int = 3
    visual_tokens: Literal["frame", "patch"] = "frame"
    speech_tokens: int = 64
    comment_tokens: int = 64
    truncate: bool = True
    comment_separator: str | None = None  # None: " {sep_token} " of the tokenizer, else " | "

    def __post_init__(self) -> None:
        if self.frames_per_segment < 1:
            raise ValueError(f"frames_per_segment: must be >= 1, got {self.frames_per_segment}")
        if self.visual_tokens not in ("frame", "patch"):
            raise ValueError(f"visual_tokens: expected 'frame' or 'patch', got {self.visual_tokens!r}")
        if self.speech_tokens < 2 or self.comment_tokens < 2:
            raise ValueError("speech_tokens and comment_tokens must be >= 2")


@dataclass(frozen=True)
class SegmentDims:
    """Fixed sizes of every `SegmentEncoding` an encoder produces."""

    visual_len: int  # k (frame tokens) or k * P (patch tokens)
    visual_dim: int  # D_v
    speech_len: int  # L_s
    comment_len: int  # L_t
    text_dim: int  # D_t
    visual_pooled_dim: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each array field of `SegmentEncoding`."""
        return {
            "visual_tokens": (self.visual_len, self.visual_dim),
            "visual_mask": (self.visual_len,),
            "speech_tokens": (self.speech_len, self.text_dim),
            "speech_mask": (self.speech_len,),
            "comment_tokens": (self.comment_len, self.text_dim),
            "comment_mask": (self.comment_len,),
            "visual_pooled": (self.visual_pooled_dim,),
            "speech_pooled": (self.text_dim,),
            "comment_pooled": (self.text_dim,),
        }


ARRAY_FIELDS = (
    "visual_tokens",
    "visual_mask",
    "speech_tokens",
    "speech_mask",
    "comment_tokens",
    "comment_mask",
    "visual_pooled",
    "speech_pooled",
    "comment_pooled",
)


@dataclass(frozen=True)
class SegmentEncoding:
    """The encoded segment: X_v, X_s, X_t with masks, pooled vectors, and the transcript used for X_s."""

    segment_id: str
    visual_tokens: np.ndarray = field(repr=False)  # X_v (visual_len, D_v) float32
    visual_mask: np.ndarray = field(repr=False)  # (visual_len,) bool
    speech_tokens: np.ndarray = field(repr=False)  # X_s (L_s, D_t) float32
    speech_mask: np.ndarray = field(repr=False)  # (L_s,) bool
    comment_tokens: np.ndarray = field(repr=False)  # X_t (L_t, D_t) float32
    comment_mask: np.ndarray = field(repr=False)  # (L_t,) bool
    visual_pooled: np.ndarray = field(repr=False)  # (D_v,) float32
    speech_pooled: np.ndarray = field(repr=False)  # (D_t,) float32
    comment_pooled: np.ndarray = field(repr=False)  # (D_t,) float32
    transcript: str = ""

    def __post_init__(self) -> None:
        for name in ARRAY_FIELDS:
            value = getattr(self, name)
            want = np.bool_ if name.endswith("_mask") else np.float32
            if not isinstance(value, np.ndarray) or value.dtype != want:
                raise InputTypeError(name, f"expected a {np.dtype(want)} array, got {type(value).__name__}")
            value.setflags(write=False)

    @property
    def x_v(self) -> np.ndarray:
        return self.visual_tokens

    @property
    def x_s(self) -> np.ndarray:
        return self.speech_tokens

    @property
    def x_t(self) -> np.ndarray:
        return self.comment_tokens

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    @classmethod
    def from_arrays(
        cls, segment_id: str, arrays: dict[str, np.ndarray], transcript: str = ""
    ) -> SegmentEncoding:
        return cls(
            segment_id=segment_id, transcript=transcript, **{n: np.asarray(arrays[n]) for n in ARRAY_FIELDS}
        )

    def matches(self, dims: SegmentDims) -> bool:
        return all(getattr(self, n).shape == s for n, s in dims.shapes().items())


class SegmentEncoder(Encoder):
    """Segments -> `SegmentEncoding`s of fixed `dims`, through a text, a frame and (optionally) an ASR model."""

    VERSION = "1"

    def __init__(
        self,
        text: TextEncoder,
        frames: FrameEncoder,
        speech: SpeechRecognizer | None = None,
        *,
        config: SegmentEncoderConfig | None = None,
        cache: EmbeddingCache | None = None,
        name: str = "segment",
    ) -> None:
        self.config = config or SegmentEncoderConfig()
        for limit_name in ("speech_tokens", "comment_tokens"):
            if getattr(self.config, limit_name) > text.max_tokens:
                raise ValueError(
                    f"{limit_name}: {getattr(self.config, limit_name)} is over the text encoder's "
                    f"max_tokens={text.max_tokens}"
                )
        self.text = text
        self.frames = frames
        self.speech = speech
        self.cache = cache
        self.name = name
        self.model = None
        sep = getattr(text.tokenizer, "sep_token", None)
        self.comment_separator = self.config.comment_separator or (f" {sep} " if sep else " | ")

    @property
    def dims(self) -> SegmentDims:
        k = self.config.frames_per_segment
        patch = self.config.visual_tokens == "patch"
        return SegmentDims(
            visual_len=k * self.frames.num_tokens if patch else k,
            visual_dim=self.frames.token_dim if patch else self.frames.embedding_dim,
            speech_len=self.config.speech_tokens,
            comment_len=self.config.comment_tokens,
            text_dim=self.text.dim,
            visual_pooled_dim=self.frames.embedding_dim,
        )

    def _fingerprint_config(self) -> dict[str, Any]:
        return {
            "segment": asdict(self.config),
            "separator": self.comment_separator,
            "text": self.text.fingerprint,
            "frames": self.frames.fingerprint,
            "speech": self.speech.fingerprint if self.speech is not None else None,
        }

    def encode(self, segment: Segment) -> SegmentEncoding:
        """Encode one segment; errors name the segment's field (`frames[1]`, `comments`, ...)."""
        if not isinstance(segment, Segment):
            raise InputTypeError("segment", f"expected a Segment, got {type(segment).__name__}")
        return self._encode([segment], lambda i: "")[0]

    def encode_batch(self, segments: Sequence[Segment]) -> list[SegmentEncoding]:
        """Encode segments with batched model calls; errors name `segments[i].<field>`."""
        for i, seg in enumerate(segments):
            if not isinstance(seg, Segment):
                raise InputTypeError(f"segments[{i}]", f"expected a Segment, got {type(seg).__name__}")
        return self._encode(list(segments), lambda i: f"segments[{i}].")

    def _encode(self, segments: list[Segment], prefix: Any) -> list[SegmentEncoding]:
        digests = []
        for i, seg in enumerate(segments):
            try:
                digests.append(seg.content_digest())
            except DecodeError as exc:
                raise type(exc)(prefix(i) + exc.field, exc.reason) from None
        entries = self._cached_map(
            "segment", list(enumerate(segments)), digests, lambda items: self._compute(items, prefix)
        )
        return [
            SegmentEncoding.from_arrays(seg.id, e.arrays, e.metadata.get("transcript", ""))
            for seg, e in zip(segments, entries, strict=True)
        ]

    # computing

    def _compute(self, items: list[tuple[int, Segment]], prefix: Any) -> list[CacheEntry]:
        dims = self.dims
        k = self.config.frames_per_segment
        frames = [self._segment_frames(seg, prefix(i)) for i, seg in items]
        transcripts = self._transcripts(items, prefix)

        # 1. visual: one frame-encoder call over every segment's k frames
        with_frames = [j for j, f in enumerate(frames) if f is not None]
        flat = [frame for j in with_frames for frame in frames[j]]
        visual = np.zeros((len(items), dims.visual_len, dims.visual_dim), np.float32)
        visual_mask = np.zeros((len(items), dims.visual_len), bool)
        visual_pooled = np.zeros((len(items), dims.visual_pooled_dim), np.float32)
        if flat:
            patch = self.config.visual_tokens == "patch"
            out = self.frames.encode_tokens(flat) if patch else self.frames.encode(flat)
            pooled = out.pooled if patch else out  # (n * k, D_v)
            for row, j in enumerate(with_frames):
                sl = slice(row * k, (row + 1) * k)
                visual[j] = out.tokens[sl].reshape(dims.visual_len, dims.visual_dim) if patch else pooled[sl]
                visual_mask[j] = True
                mean = pooled[sl].mean(axis=0)
                if self.frames.config.normalize:
                    mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
                visual_pooled[j] = mean

        # 2. speech and comments: one text-encoder call each
        speech = self._text_sequences(
            transcripts, self.config.speech_tokens, [prefix(i) + "transcript" for i, _ in items]
        )
        joined = [self.comment_separator.join(c for c in seg.comments if c.strip()) for _, seg in items]
        comments = self._text_sequences(
            joined, self.config.comment_tokens, [prefix(i) + "comments" for i, _ in items]
        )

        out_entries = []
        for j in range(len(items)):
            arrays = {
                "visual_tokens": visual[j],
                "visual_mask": visual_mask[j],
                "speech_tokens": speech[0][j],
                "speech_mask": speech[1][j],
                "comment_tokens": comments[0][j],
                "comment_mask": comments[1][j],
                "visual_pooled": visual_pooled[j],
                "speech_pooled": speech[2][j],
                "comment_pooled": comments[2][j],
            }
            out_entries.append(CacheEntry(arrays, {"transcript": transcripts[j]}))
        return out_entries

    def _segment_frames(self, seg: Segment, prefix: str) -> list[np.ndarray] | None:
        k = self.config.frames_per_segment
        if seg.video is not None:
            return list(sample_segment_frames(seg.video, k, seg.start, seg.end, field=prefix + "video"))
        if seg.frames is None:
            return None
        frames = seg.frames
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            picked = [frames[i] for i in uniform_frame_indices(len(frames), k)]
            return as_rgb_frames(picked, field=prefix + "frames")
        if isinstance(frames, np.ndarray | str | os.PathLike):
            frames = [frames]
        idx = uniform_frame_indices(len(frames), k)
        decoded = {i: as_rgb_frame(frames[i], field=f"{prefix}frames[{i}]") for i in sorted(set(idx))}
        return [decoded[i] for i in idx]

    def _transcripts(self, items: list[tuple[int, Segment]], prefix: Any) -> list[str]:
        transcripts = [seg.transcript if seg.transcript is not None else "" for _, seg in items]
        todo: list[int] = []
        waves: list[np.ndarray] = []
        for j, (i, seg) in enumerate(items):
            if seg.transcript is not None:
                continue
            wave = self._segment_audio(seg, prefix(i))
            if wave is not None:
                todo.append(j)
                waves.append(wave)
        if waves:
            assert self.speech is not None
            texts = self.speech.transcribe(waves, sampling_rate=self.speech.sampling_rate)
            for j, text in zip(todo, texts, strict=True):
                transcripts[j] = text
        return transcripts

    def _segment_audio(self, seg: Segment, prefix: str) -> np.ndarray | None:
        if seg.audio is not None:
            if self.speech is None:
                raise InputTypeError(
                    prefix + "audio", "the segment carries audio but the encoder has no speech recognizer"
                )
            if isinstance(seg.audio, np.ndarray):
                return self.speech.prepare(seg.audio, seg.sampling_rate, prefix + "audio")
            return read_audio(
                Path(seg.audio),
                seg.start,
                seg.end,
                sampling_rate=self.speech.sampling_rate,
                field=prefix + "audio",
            )
        if seg.video is not None and self.speech is not None:
            return read_audio(
                seg.video,
                seg.start,
                seg.end,
                sampling_rate=self.speech.sampling_rate,
                field=prefix + "video",
                missing_ok=True,
            )
        return None

    def _text_sequences(
        self, texts: list[str], length: int, names: list[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.text.dim
        tokens = np.zeros((len(texts), length, d), np.float32)
        mask = np.zeros((len(texts), length), bool)
        pooled = np.zeros((len(texts), d), np.float32)
        present = [j for j, t in enumerate(texts) if t.strip()]
        if present:
            out = self.text.encode_tokens(
                [texts[j] for j in present],
                max_tokens=length,
                truncate=self.config.truncate,
                pad_to=length,
                field=[names[j] for j in present],
            )
            tokens[present], mask[present], pooled[present] = out.tokens, out.mask, out.pooled
        return tokens, mask, pooled
