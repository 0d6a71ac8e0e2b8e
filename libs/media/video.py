"""Video decoding and encoding with PyAV (FFmpeg bundled in the `av` wheel).

    frames, fps = read_video("clip.mp4", max_frames=49)       # uint8 (T, H, W, 3) RGB
    for frame in iter_video_frames("long.mp4"): ...           # streaming, one (H, W, 3) frame at a time
    probe_video("clip.mp4")                                    # VideoInfo(num_frames, fps, width, height, ...)
    sample_frames("live.mp4", 3, start_time=30, end_time=60)   # (3, H, W, 3): centres of 3 equal parts, seconds
    read_audio("live.mp4", start_time=30, end_time=60)         # (n,) float32 mono at 16 kHz (sampling_rate=)
    write_video("out.mp4", frames, fps=8)                      # H.264 yuv420p; .gif by extension
    data = encode_video(frames, fps=8, format="mp4")           # bytes, for artifact stores / MediaRef

Our choices:

- Sources are paths, bytes or binary file objects. Anything FFmpeg cannot open, a file with no video stream
  or no decodable frame raises `VideoDecodeError` (a ValueError) naming the source and the reason; a missing
  path raises FileNotFoundError.
- `start` skips that many decoded frames (frame-exact; no keyframe seeking, which is approximate).
- Time ranges (`start_time`/`end_time`, seconds from the container's start time, for segments of long
  recordings) seek to the keyframe before `start_time`, then decode forward. `sample_frames` takes the first
  frame at or after each of k centres, keeping only k frames in memory; a range past the last frame repeats the
  last frame of the range. A range with no frame (or audio sample) at all is an `EmptyRangeError` (a ValueError).
  This is the one time-based decoder: the encoder library's segment sampling (`libs.encoders.video`) uses it.
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
DEFAULT_SAMPLING_RATE = 16_000


class VideoDecodeError(ValueError):
    """A video could not be read: unreadable or empty file, no video (or audio) stream, or no decodable frame."""


class EmptyRangeError(ValueError):
    """A time range with nothing in it: empty, or past the last frame (or audio sample) of the video."""


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


def _describe(source: Any, kind: str = "video") -> str:
    if isinstance(source, str | os.PathLike):
        return f"{kind} file {os.fspath(source)!r}"
    if isinstance(source, bytes | bytearray | memoryview):
        return f"{kind} bytes ({len(source)} bytes)"
    return f"{kind} stream {getattr(source, 'name', type(source).__name__)!r}"


def _open_container(source: VideoSource, kind: str = "video") -> tuple[Any, str]:
    """(container, description) of `source`, any streams; the caller closes the container."""
    name = _describe(source, kind)
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
        return av.open(target, mode="r"), name
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"cannot read {name}: FFmpeg could not open it ({_reason(e)})") from None


def _open(source: VideoSource) -> tuple[Any, Any, str]:
    """(container, video stream, description) of `source`; the caller closes the container."""
    container, name = _open_container(source)
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
        codec = stream.codec_context  # None when the stream's codec parameters are missing (a truncated file)
        if codec is None or not codec.width or not codec.height:
            raise VideoDecodeError(f"cannot read {name}: its video stream has no frame size")
        width, height = codec.width, codec.height
        duration = _duration(container, stream)
        num_frames = stream.frames
        if not num_frames:
            try:
                num_frames = sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError as e:
                raise VideoDecodeError(f"cannot read {name}: demuxing failed ({_reason(e)})") from None
        if not num_frames:
            raise VideoDecodeError(f"cannot read {name}: it contains no video frames")
        return VideoInfo(num_frames, fps, width, height, duration, codec.name)
    finally:
        container.close()


def _duration(container: Any, stream: Any) -> float | None:
    """Seconds of `stream` (the container's duration when the stream states none); None when neither does."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


# -- decoding by time (seconds) ----------------------------------------------------------------------------


def _zero(container: Any) -> float:
    """The container's start time in seconds: times count from it (MPEG-TS recordings rarely start at 0)."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _check_times(start_time: float | None, end_time: float | None) -> tuple[float, float | None]:
    start = 0.0 if start_time is None else float(start_time)
    if not start >= 0:
        raise ValueError(f"start_time must be >= 0 seconds, got {start_time!r}")
    if end_time is not None and float(end_time) <= start:
        raise EmptyRangeError(f"empty time range [{start}, {end_time})")
    return start, None if end_time is None else float(end_time)


def video_duration(source: VideoSource) -> float:
    """Seconds of the first video stream (the container's duration when the stream states none)."""
    container, stream, name = _open(source)
    try:
        duration = _duration(container, stream)
    finally:
        container.close()
    if duration is None:
        raise VideoDecodeError(f"cannot read {name}: it states no duration")
    return duration


def sample_frames(
    source: VideoSource, k: int, *, start_time: float | None = None, end_time: float | None = None
) -> np.ndarray:
    """k uint8 RGB frames (k, H, W, 3) at the centres of k equal parts of [start_time, end_time) seconds.

    Frame i is the first frame shown at or after the centre of part i (the last frame of the range when the
    range runs past the video's last frame), so one frame may repeat. One forward pass from the keyframe before
    `start_time`, keeping only k frames in memory. `end_time` None means the end of the video. An empty range,
    or one past the end of the video, is an `EmptyRangeError`; unreadable sources raise `VideoDecodeError`.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    start, end = _check_times(start_time, end_time)
    container, stream, name = _open(source)
    try:
        if end is None:
            end = _duration(container, stream)
            if end is None:
                raise VideoDecodeError(f"cannot read {name}: it states no duration")
            if end <= start:
                raise EmptyRangeError(f"start {start} s is past the end of {name} ({end:.3f} s)")
        targets = [start + (i + 0.5) * (end - start) / k for i in range(k)]
        picked = _pick_frames(container, stream, name, start, end, targets)
    finally:
        container.close()
    if not picked:
        raise EmptyRangeError(f"no frame of {name} in [{start}, {end}) s")
    return np.stack(picked)  # (k, H, W, 3)


def _pick_frames(
    container: Any, stream: Any, name: str, start: float, end: float, targets: list[float]
) -> list[np.ndarray]:
    k = len(targets)
    picked: list[np.ndarray] = []
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
            if t >= targets[len(picked)]:
                rgb = frame.to_ndarray(format="rgb24")
                while len(picked) < k and t >= targets[len(picked)]:
                    picked.append(rgb)
            if len(picked) == k:
                break
        if len(picked) < k and last_frame is not None:  # the range runs past the last frame
            picked.extend([last_frame.to_ndarray(format="rgb24")] * (k - len(picked)))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot read {name}: decoding failed ({_reason(e)})") from None
    return picked


def read_audio(
    source: VideoSource,
    *,
    start_time: float | None = None,
    end_time: float | None = None,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    missing_ok: bool = False,
) -> np.ndarray | None:
    """Mono float32 samples at `sampling_rate` of the first audio stream in [start_time, end_time) seconds.

    Any container with an audio stream works (a video, or an audio file). Resampled and downmixed by FFmpeg.
    A source without an audio stream raises `VideoDecodeError`, or returns None with `missing_ok=True` (a silent
    video); a range with no sample is an `EmptyRangeError`.
    """
    start, end = _check_times(start_time, end_time)
    if (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, int | np.integer)
        or sampling_rate < 1
    ):
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    container, name = _open_container(source, "media")
    try:
        if not container.streams.audio:
            if missing_ok:
                return None
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(
                f"cannot read {name}: it has no audio stream (streams: {', '.join(kinds)})"
            )
        samples, offset = _decode_audio(
            container, container.streams.audio[0], name, start, end, sampling_rate
        )
    finally:
        container.close()
    lo = max(0, round((start - offset) * sampling_rate))
    hi = len(samples) if end is None else max(lo, round((end - offset) * sampling_rate))
    segment = samples[lo:hi]
    if segment.size == 0:
        raise EmptyRangeError(f"no audio of {name} in [{start}, {end}) s")
    return segment


def _decode_audio(
    container: Any, stream: Any, name: str, start: float, end: float | None, sampling_rate: int
) -> tuple[np.ndarray, float]:
    """(samples, time in seconds of samples[0]) from the packet before `start` to the first past `end`."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
    zero = _zero(container)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    try:
        if start > 0 and stream.time_base is not None:
            container.seek(int((start + zero) / stream.time_base), stream=stream, backward=True)
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
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot read {name}: decoding its audio failed ({_reason(e)})") from None
    if not chunks:
        return np.zeros(0, np.float32), 0.0
    return np.concatenate(chunks).astype(np.float32), first_time or 0.0


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
