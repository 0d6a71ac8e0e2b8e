"""Frames and audio of a video segment (a file and a time range), with errors that name the segment's field.

    frames = sample_segment_frames("live.mp4", k=3, start=30.0, end=60.0)   # (3, H, W, 3) uint8
    audio = read_audio("live.mp4", start=30.0, end=60.0)                   # (n,) float32 mono, 16 kHz

Decoding is `libs.media.video`'s (PyAV; its docstring has the choices: seconds from the container's start time,
the first frame at or after each of k centres of [start, end), one forward pass from the keyframe before `start`,
a range past the end of the video clipped to it). This module only translates its errors into the encoder
library's: a missing file or one that does not decode is a `DecodeError`, a range with no frame or sample an
`EmptyInputError`, both naming `field`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from libs.encoders.errors import DecodeError, EmptyInputError
from libs.media import video as media_video
from libs.media.video import DEFAULT_SAMPLING_RATE, EmptyRangeError, VideoDecodeError

__all__ = ["DEFAULT_SAMPLING_RATE", "read_audio", "sample_segment_frames", "video_duration"]


@contextmanager
def _field_errors(path: str | os.PathLike[str], field: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise DecodeError(field, f"no such file: {path}") from None
    except EmptyRangeError as exc:
        raise EmptyInputError(field, str(exc)) from None
    except VideoDecodeError as exc:
        raise DecodeError(field, str(exc)) from None


def video_duration(path: str | os.PathLike[str], *, field: str = "video") -> float:
    """Duration in seconds of the first video stream (container duration when the stream has none)."""
    with _field_errors(path, field):
        return media_video.video_duration(path)


def sample_segment_frames(
    path: str | os.PathLike[str],
    k: int,
    start: float | None = None,
    end: float | None = None,
    *,
    field: str = "video",
) -> np.ndarray:
    """k RGB uint8 frames (k, H, W, 3) at the centres of k equal parts of [start, end) seconds."""
    with _field_errors(path, field):
        return media_video.sample_frames(path, k, start_time=start, end_time=end)


def read_audio(
    path: str | os.PathLike[str],
    start: float | None = None,
    end: float | None = None,
    *,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    field: str = "audio",
    missing_ok: bool = False,
) -> np.ndarray | None:
    """Mono float32 samples at `sampling_rate` of the first audio stream within [start, end) seconds.

    A file without an audio stream is a `DecodeError`, or None with `missing_ok=True` (a silent video).
    """
    with _field_errors(path, field):
        return media_video.read_audio(
            path, start_time=start, end_time=end, sampling_rate=sampling_rate, missing_ok=missing_ok
        )
