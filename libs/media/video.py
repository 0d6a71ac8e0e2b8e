"""Video decoding and encoding with PyAV (FFmpeg bundled in the `av` wheel).

    frames, fps = read_video("clip.mp4", max_frames=49)       # uint8 (T, H, W, 3) RGB
    for frame in iter_video_frames("long.mp4"): ...           # streaming, one (H, W, 3) frame at a time
    probe_video("clip.mp4")                                    # VideoInfo(num_frames, fps, width, height, ...)
    write_video("out.mp4", frames, fps=8)                      # H.264 yuv420p; .gif by extension
    data = encode_video(frames, fps=8, format="mp4")           # bytes, for artifact stores / MediaRef

Our choices:

- Sources are paths, bytes or binary file objects. Anything FFmpeg cannot open, a file with no video stream
  or no decodable frame raises `VideoDecodeError` (a ValueError) naming the source and the reason; a missing
  path raises FileNotFoundError.
- `start` skips that many decoded frames (frame-exact; no keyframe seeking, which is approximate).
- MP4/MOV/MKV are encoded with libx264 (yuv420p, CRF 18, `+faststart` for MP4), which the PyAV wheels bundle;
  if an FFmpeg build lacks it, MPEG-4 part 2 at a high bitrate is used instead (logged once). yuv420p needs
  even sizes: odd widths/heights are padded by repeating the last column/row, so an odd-sized video reads
  back one pixel larger.
- GIF frames are quantised to a 256-colour palette per frame (Pillow's median cut), then written by FFmpeg's
  GIF encoder, which keeps every frame (Pillow's own GIF writer merges identical consecutive frames, which
  would change the frame count). GIF stores delays in 1/100 s, so fps reads back rounded.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import av
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

VideoSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
VideoFormat = Literal["mp4", "mov", "mkv", "gif"]
_CONTAINERS: dict[str, VideoFormat] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "mkv",
    ".gif": "gif",
}
_FFMPEG_FORMAT = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "gif": "gif"}


class VideoDecodeError(ValueError):
    """A video could not be read: unreadable or empty file, no video stream, or no decodable frame."""


class Video(NamedTuple):
    """Decoded frames (uint8 (T, H, W, 3) RGB) and their frame rate."""

    frames: np.ndarray
    fps: float


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` finds without decoding frames."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float | None
    """Seconds, from the container; None when it does not say."""
    codec: str


# -- decoding ----------------------------------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return f"video file {os.fspath(source)!r}"
    if isinstance(source, bytes | bytearray | memoryview):
        return f"video bytes ({len(source)} bytes)"
    return f"video stream {getattr(source, 'name', type(source).__name__)!r}"


def _open(source: VideoSource) -> tuple[Any, Any, str]:
    """(container, video stream, description) of `source`; the caller closes the container."""
    name = _describe(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such {name}")
        if path.is_dir():
            raise VideoDecodeError(f"cannot read {name}: it is a directory")
        if path.stat().st_size == 0:
            raise VideoDecodeError(f"cannot read {name}: the file is empty")
        target: Any = os.fspath(path)
    elif isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise VideoDecodeError(f"cannot read {name}: no bytes")
        target = io.BytesIO(bytes(source))
    else:
        target = source
    try:
        container = av.open(target, mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"cannot read {name}: FFmpeg could not open it ({_reason(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(f"cannot read {name}: it has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream, name


def _stream_fps(stream: Any, name: str) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    if stream.duration and stream.frames and stream.time_base:
        return stream.frames / float(stream.duration * stream.time_base)
    raise VideoDecodeError(f"cannot read {name}: it states no frame rate")


def _check_range(start: int, max_frames: int | None) -> None:
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise ValueError(f"start must be a non-negative frame index, got {start!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int | np.integer) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")


def iter_video_frames(
    source: VideoSource, *, start: int = 0, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Decode frames one at a time as uint8 (H, W, 3) RGB arrays: frames start, start+1, ... (at most max_frames).

    Only the current frame is held, so long videos stream in bounded memory. Raises VideoDecodeError when the
    source cannot be opened, or when it holds no decodable frame at all.
    """
    _check_range(start, max_frames)
    container, stream, name = _open(source)  # eagerly: a bad source fails here, not at the first next()
    return _closing(container, _decode(container, stream, name, start, max_frames))


def _closing(container: Any, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    try:
        yield from frames
    finally:
        container.close()


def _decode(
    container: Any, stream: Any, name: str, start: int, max_frames: int | None
) -> Iterator[np.ndarray]:
    decoded = 0
    yielded = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            if decoded <= start:
                continue
            yield frame.to_ndarray(format="rgb24")
            yielded += 1
            if max_frames is not None and yielded >= max_frames:
                return
    except av.FFmpegError as e:
        if decoded == 0:
            raise VideoDecodeError(f"cannot read {name}: no frame could be decoded ({_reason(e)})") from None
        raise VideoDecodeError(
            f"cannot read {name}: decoding failed after frame {decoded - 1} ({_reason(e)})"
        ) from None
    if decoded == 0:
        raise VideoDecodeError(f"cannot read {name}: it contains no decodable video frames")


def read_video(source: VideoSource, max_frames: int | None = None, start: int = 0) -> Video:
    """Decode a whole video (or `max_frames` from frame `start`) into `Video(frames (T, H, W, 3) uint8, fps)`.

    ValueError if `start` is past the last frame; VideoDecodeError for unreadable or empty videos.
    """
    _check_range(start, max_frames)
    container, stream, name = _open(source)
    try:
        fps = _stream_fps(stream, name)
        frames = list(_decode(container, stream, name, start, max_frames))
    finally:
        container.close()
    if not frames:
        raise ValueError(f"start={start} is past the last frame of {name}")
    return Video(np.stack(frames), fps)


def probe_video(source: VideoSource) -> VideoInfo:
    """Frame count, fps, size, duration and codec of a video; counts packets when the container has no count."""
    container, stream, name = _open(source)
    try:
        fps = _stream_fps(stream, name)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoDecodeError(f"cannot read {name}: its video stream has no frame size")
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        num_frames = stream.frames
        if not num_frames:
            try:
                num_frames = sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError as e:
                raise VideoDecodeError(f"cannot read {name}: demuxing failed ({_reason(e)})") from None
        if not num_frames:
            raise VideoDecodeError(f"cannot read {name}: it contains no video frames")
        return VideoInfo(num_frames, fps, width, height, duration, stream.codec_context.name)
    finally:
        container.close()


def _reason(error: Exception) -> str:
    """FFmpeg's message without the placeholder file name PyAV appends for in-memory sources."""
    return getattr(error, "strerror", None) or str(error)


# -- encoding ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def h264_encoder() -> str:
    """ "libx264" when this FFmpeg build has it, else "mpeg4" (logged once)."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except (av.FFmpegError, ValueError):
        logger.warning("libx264 is not in this FFmpeg build; writing MPEG-4 part 2 video instead of H.264")
        return "mpeg4"


def _fps_fraction(fps: float) -> Fraction:
    if (
        isinstance(fps, bool)
        or not isinstance(fps, int | float | Fraction | np.number)
        or not fps > 0
        or not np.isfinite(float(fps))
    ):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _frames_iter(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Checked (H, W, 3) uint8 frames of a (T, H, W, 3) array or an iterable of frames, all one size."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got an array of shape {frames.shape}")
    size = None
    for t, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {t} must be (H, W, 3) RGB, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame {t} must be uint8, got {frame.dtype}")
        if size is None:
            size = frame.shape
            if frame.shape[0] < 1 or frame.shape[1] < 1:
                raise ValueError(f"frames must be at least 1x1, got {frame.shape[1]}x{frame.shape[0]}")
        elif frame.shape != size:
            raise ValueError(
                f"frame {t} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {size[1]}x{size[0]}"
            )
        yield frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _format_of(path: Path) -> VideoFormat:
    fmt = _CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot write video {path}: unknown extension {path.suffix!r}; use one of {', '.join(sorted(_CONTAINERS))}"
        )
    return fmt


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
) -> None:
    """Encode uint8 RGB frames ((T, H, W, 3) or an iterable of (H, W, 3)) to `path`, by extension.

    .mp4/.m4v/.mov/.mkv: H.264 yuv420p (see `h264_encoder`), `crf` (0 lossless .. 51 worst) and x264 `preset`;
    .gif: 256-colour palette GIF. Frames are consumed one at a time, so an iterable streams.
    """
    path = Path(path)
    fmt = _format_of(path)
    try:
        _encode(os.fspath(path), frames, fps, fmt, crf=crf, preset=preset)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written video left behind
        raise


def encode_video(
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    format: VideoFormat = "mp4",
    *,
    crf: int = 18,
    preset: str = "medium",
) -> bytes:
    """Like `write_video`, into bytes (format "mp4", "mov", "mkv" or "gif")."""
    if format not in _FFMPEG_FORMAT:
        raise ValueError(f"unknown video format {format!r}; use one of {', '.join(_FFMPEG_FORMAT)}")
    if format == "gif" or format == "mkv":
        buffer = io.BytesIO()
        _encode(buffer, frames, fps, format, crf=crf, preset=preset)
        return buffer.getvalue()
    # MP4/MOV "+faststart" rewrites the file by name in a second pass: go through a temporary file.
    with tempfile.TemporaryDirectory(prefix="kmono-video-") as tmp:
        path = os.path.join(tmp, f"video.{format}")
        _encode(path, frames, fps, format, crf=crf, preset=preset)
        return Path(path).read_bytes()


def _encode(
    file: str | IO[bytes], frames: Any, fps: float, fmt: VideoFormat, *, crf: int, preset: str
) -> None:
    rate = _fps_fraction(fps)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") and isinstance(file, str) else {}
    with av.open(file, mode="w", format=_FFMPEG_FORMAT[fmt], options=options) as container:
        stream = None
        count = 0
        for count, frame in enumerate(_frames_iter(frames), start=1):
            if stream is None:
                stream = _add_stream(container, fmt, rate, frame.shape[1], frame.shape[0], crf, preset)
            video_frame = _to_av_frame(frame, fmt)
            video_frame.pts = count - 1
            for packet in stream.encode(video_frame):
                container.mux(packet)
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode(None):
            container.mux(packet)
    logger.debug("encoded %d frames as %s at %s fps", count, fmt, rate)


def _add_stream(
    container: Any, fmt: VideoFormat, rate: Fraction, width: int, height: int, crf: int, preset: str
) -> Any:
    if fmt == "gif":
        stream = container.add_stream("gif", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
    else:
        codec = h264_encoder()
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": preset}
        else:
            stream.bit_rate = max(2_000_000, int(width * height * float(rate) * 2))
    stream.codec_context.time_base = 1 / rate
    return stream


def _to_av_frame(frame: np.ndarray, fmt: VideoFormat) -> Any:
    if fmt != "gif":
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(frame)), format="rgb24").reformat(
            format="yuv420p"
        )
    quantised = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    indices = np.asarray(quantised, dtype=np.uint8)
    rgb = np.zeros((256, 3), dtype=np.uint8)
    used = np.frombuffer(bytes(quantised.getpalette() or []), dtype=np.uint8).reshape(-1, 3)[:256]
    rgb[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, dtype=np.uint8), rgb], axis=1)  # (256, 4) ARGB
    return av.VideoFrame.from_ndarray((np.ascontiguousarray(indices), argb), format="pal8")
