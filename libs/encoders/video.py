"""Frames and audio of a video segment (a file and a time range), decoded with PyAV.

    frames = sample_segment_frames("live.mp4", k=3, start=30.0, end=60.0)   # (3, H, W, 3) uint8
    audio = read_audio("live.mp4", start=30.0, end=60.0)                   # (n,) float32 mono, 16 kHz

Times are seconds from the container's start time. Our choices: the k frames are those shown at the centres of k equal sub-intervals of [start, end) (the first
decoded frame at or after each centre, else the last frame of the range), decoded in one forward pass from
the keyframe before `start`, keeping only k frames in memory. A range past the end of the video is clipped
to the video; a range with no frame at all is an `EmptyInputError`. Files that are missing or do not decode
raise `DecodeError` naming the field.
"""

from __future__ import annotations

import logging
import os

import av
import numpy as np

from libs.encoders.errors import DecodeError, EmptyInputError

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING_RATE = 16_000


def _open(path: str | os.PathLike[str], field: str):
    try:
        return av.open(os.fspath(path))
    except FileNotFoundError:
        raise DecodeError(field, f"no such file: {path}") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(field, f"cannot open {path}: {exc}") from None


def _check_range(start: float | None, end: float | None, field: str) -> tuple[float, float | None]:
    start = 0.0 if start is None else float(start)
    if start < 0:
        raise ValueError(f"{field}.start: must be >= 0, got {start}")
    if end is not None and end <= start:
        raise EmptyInputError(field, f"empty time range [{start}, {end})")
    return start, None if end is None else float(end)


def _zero(container) -> float:
    """The container's start time in seconds: segment times count from it (MPEG-TS recordings rarely start at 0)."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def video_duration(path: str | os.PathLike[str], *, field: str = "video") -> float:
    """Duration in seconds of the first video stream (container duration when the stream has none)."""
    with _open(path, field) as container:
        if not container.streams.video:
            raise DecodeError(field, f"{path} has no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    raise DecodeError(field, f"{path}: unknown duration")


def sample_segment_frames(
    path: str | os.PathLike[str],
    k: int,
    start: float | None = None,
    end: float | None = None,
    *,
    field: str = "video",
) -> np.ndarray:
    """k RGB uint8 frames (k, H, W, 3) at the centres of k equal parts of [start, end) seconds."""
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    start, end = _check_range(start, end, field)
    if end is None:
        end = video_duration(path, field=field)
        if end <= start:
            raise EmptyInputError(field, f"start {start} s is past the end of the video ({end:.3f} s)")
    targets = [start + (i + 0.5) * (end - start) / k for i in range(k)]
    picked: list[np.ndarray] = []
    with _open(path, field) as container:
        if not container.streams.video:
            raise DecodeError(field, f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        zero = _zero(container)
        last_frame = None
        try:
            if start > 0 and stream.time_base is not None:
                container.seek(
                    int((start + zero) / stream.time_base), stream=stream, backward=True, any_frame=False
                )
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - zero
                if t < start:
                    continue
                if t >= end:
                    break
                last_frame = frame
                if len(picked) < k and t >= targets[len(picked)]:
                    rgb = frame.to_ndarray(format="rgb24")
                    while len(picked) < k and t >= targets[len(picked)]:
                        picked.append(rgb)
                if len(picked) == k:
                    break
            if len(picked) < k and last_frame is not None:  # the range runs past the last frame
                rgb = last_frame.to_ndarray(format="rgb24")
                picked.extend([rgb] * (k - len(picked)))
        except av.error.FFmpegError as exc:
            raise DecodeError(field, f"cannot decode {path}: {exc}") from None
    if not picked:
        raise EmptyInputError(field, f"no frame of {path} in [{start}, {end}) s")
    return np.stack(picked)  # (k, H, W, 3)


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
    start, end = _check_range(start, end, field)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    chunks: list[np.ndarray] = []
    with _open(path, field) as container:
        if not container.streams.audio:
            if missing_ok:
                return None
            raise DecodeError(field, f"{path} has no audio stream")
        stream = container.streams.audio[0]
        zero = _zero(container)
        try:
            if start > 0 and stream.time_base is not None:
                container.seek(int((start + zero) / stream.time_base), stream=stream, backward=True)
            first_time: float | None = None
            for frame in container.decode(stream):
                t = None if frame.time is None else float(frame.time) - zero
                if t is not None and first_time is None:
                    first_time = t
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if end is not None and t is not None and t > end:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise DecodeError(field, f"cannot decode audio of {path}: {exc}") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = (first_time or 0.0) if chunks else 0.0
    lo = max(0, round((start - offset) * sampling_rate))
    hi = len(samples) if end is None else max(lo, round((end - offset) * sampling_rate))
    segment = samples[lo:hi]
    if segment.size == 0:
        raise EmptyInputError(field, f"no audio of {path} in [{start}, {end}) s")
    return segment
