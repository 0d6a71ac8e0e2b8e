import av
import numpy as np
import pytest

from libs.media import (
    VideoDecodeError,
    encode_video,
    iter_video_frames,
    probe_video,
    read_video,
    write_video,
)
from libs.media.video import EmptyRangeError, h264_encoder, read_audio, sample_frames, video_duration

AUDIO_RATE = 16_000


def smooth_video(t=12, h=48, w=64):
    """A slowly drifting colour gradient: easy for any codec, so pixel errors stay small."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = [
        np.stack([(xx * 3 + 4 * i) % 256, yy * 4, np.full_like(xx, 96 + 4 * i)], axis=-1) for i in range(t)
    ]
    return np.stack(frames).astype(np.uint8)


def test_bundled_ffmpeg_has_libx264():
    assert h264_encoder() == "libx264"


def test_mp4_write_then_read(tmp_path):
    frames = smooth_video()
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (12, 64, 48, 8.0, "h264")
    assert info.duration == pytest.approx(1.5)
    video = read_video(path)
    assert video.frames.shape == frames.shape and video.frames.dtype == np.uint8 and video.fps == 8.0
    assert np.abs(video.frames.astype(int) - frames).mean() < 3.0
    part = read_video(str(path), max_frames=4, start=5)
    np.testing.assert_array_equal(part.frames, video.frames[5:9])
    streamed = list(iter_video_frames(path, start=10))
    assert len(streamed) == 2 and np.array_equal(streamed[1], video.frames[11])


def test_odd_sizes_are_padded_and_bytes_round_trip():
    frames = smooth_video(t=3, h=33, w=47)
    data = encode_video(iter(frames), fps=29.97)  # an iterable streams
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # +faststart
    video = read_video(data)
    assert video.frames.shape == (3, 34, 48, 3) and video.fps == pytest.approx(29.97)
    assert np.abs(video.frames[:, :33, :47].astype(int) - frames).mean() < 4.0


def test_gif_writes(tmp_path):
    frames = smooth_video(t=5, h=20, w=30)
    write_video(tmp_path / "clip.gif", frames, fps=10)
    info = probe_video(tmp_path / "clip.gif")
    assert (info.num_frames, info.width, info.height, info.codec) == (5, 30, 20, "gif")
    back = read_video(tmp_path / "clip.gif")
    assert back.frames.shape == frames.shape and back.fps == pytest.approx(10, rel=0.05)
    assert np.abs(back.frames.astype(int) - frames).mean() < 6.0
    static = np.repeat(frames[:1], 4, axis=0)  # identical frames are kept, not merged
    assert probe_video(encode_video(static, fps=5, format="gif")).num_frames == 4


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 20, bytes(range(256)) * 8])
def test_garbage_and_empty_input_raise_video_decode_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    for reader in (read_video, probe_video, iter_video_frames):
        with pytest.raises(VideoDecodeError, match=r"cannot read video file '.*broken.mp4'") as info:
            reader(path)
        assert isinstance(info.value, ValueError)
        with pytest.raises(VideoDecodeError, match=r"cannot read video bytes \(\d+ bytes\)"):
            reader(content)


def test_truncated_mp4_raises_video_decode_error():
    data = encode_video(smooth_video(t=4), fps=8)
    with pytest.raises(VideoDecodeError):
        read_video(data[: len(data) // 3])


def test_read_errors():
    data = encode_video(smooth_video(t=3), fps=8)
    with pytest.raises(ValueError, match="start=5 is past the last frame"):
        read_video(data, start=5)
    with pytest.raises(ValueError, match="max_frames must be a positive integer"):
        read_video(data, max_frames=0)
    with pytest.raises(FileNotFoundError):
        read_video("/nonexistent/video.mp4")


def test_write_errors(tmp_path):
    frames = smooth_video(t=2, h=8, w=8)
    with pytest.raises(ValueError, match=r"unknown extension '\.avi'"):
        write_video(tmp_path / "x.avi", frames, fps=8)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        write_video(tmp_path / "x.mp4", frames, fps=0)
    with pytest.raises(ValueError, match="frame 0 must be uint8, got float32"):
        write_video(tmp_path / "x.mp4", frames.astype(np.float32), fps=8)
    with pytest.raises(ValueError, match=r"frame 1 is 6x8, frame 0 is 8x8"):
        write_video(tmp_path / "x.mp4", [frames[0], frames[1][:, :6]], fps=8)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "x.mp4", [], fps=8)
    assert not (tmp_path / "x.mp4").exists()  # no half-written files


def grey_video(path, *, frames=30, fps=10, audio=True, video=True, first_pts=0, container_format=None):
    """Frame i is a flat grey of level 8*i (64x48), shown at (first_pts + i) / fps seconds; a 0.3-amplitude 440 Hz
    mono track lasts as long."""
    with av.open(str(path), "w", format=container_format) as container:
        if video:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if audio:
            audio_stream = container.add_stream("aac" if video else "pcm_f32le", rate=AUDIO_RATE)
        for i in range(frames if video else 0):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts = first_pts + i
            for packet in stream.encode(frame):
                container.mux(packet)
        if video:
            for packet in stream.encode():
                container.mux(packet)
        if audio:
            n = frames * AUDIO_RATE // fps
            samples = (0.3 * np.sin(np.arange(n) / AUDIO_RATE * 2 * np.pi * 440)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    samples[None, start : start + 1024], format="flt", layout="mono"
                )
                chunk.sample_rate = AUDIO_RATE
                for packet in audio_stream.encode(chunk):
                    container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)
    return path


def levels(frames):
    return [round(float(f.mean()) / 8) for f in frames]


@pytest.fixture(scope="module")
def grey_mp4(tmp_path_factory):
    return grey_video(tmp_path_factory.mktemp("media") / "grey.mp4")


def test_sample_frames_by_time(grey_mp4):
    assert video_duration(grey_mp4) == pytest.approx(3.0)
    frames = sample_frames(grey_mp4, 3)
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert levels(frames) == [5, 15, 25]  # centres 0.5, 1.5, 2.5 s at 10 fps
    assert levels(sample_frames(grey_mp4, 2, start_time=1.0, end_time=2.0)) == [
        13,
        18,
    ]  # at/after 1.25, 1.75 s
    assert levels(sample_frames(grey_mp4.read_bytes(), 1, start_time=2.0)) == [25]  # bytes sources too
    assert levels(sample_frames(grey_mp4, 3, start_time=2.5, end_time=10.0)) == [
        29,
        29,
        29,
    ]  # last frame repeats


def test_time_ranges_count_from_the_container_start(tmp_path):
    ts = grey_video(tmp_path / "rec.ts", audio=False, first_pts=50, container_format="mpegts")
    with av.open(str(ts)) as container:
        assert container.start_time > 0  # a recording cut from a live stream: its first frame is at 5 s
    assert levels(sample_frames(ts, 3)) == [5, 15, 25]


def test_sample_frames_errors(grey_mp4, tmp_path):
    with pytest.raises(EmptyRangeError, match=r"empty time range \[2.0, 2.0\)"):
        sample_frames(grey_mp4, 3, start_time=2.0, end_time=2.0)
    with pytest.raises(EmptyRangeError, match="past the end"):
        sample_frames(grey_mp4, 3, start_time=5.0)
    with pytest.raises(EmptyRangeError, match="no frame of video file"):
        sample_frames(grey_mp4, 3, start_time=5.0, end_time=6.0)
    assert issubclass(EmptyRangeError, ValueError)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sample_frames(grey_mp4, 0)
    with pytest.raises(ValueError, match="start_time must be >= 0"):
        sample_frames(grey_mp4, 1, start_time=-1)
    with pytest.raises(FileNotFoundError):
        sample_frames(tmp_path / "missing.mp4", 1)
    with pytest.raises(VideoDecodeError, match="cannot read video bytes"):
        sample_frames(bytes(range(256)) * 8, 1)


def test_read_audio_by_time(grey_mp4, tmp_path):
    audio = read_audio(grey_mp4, start_time=1.0, end_time=2.0)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - AUDIO_RATE) <= 1024
    assert 0.15 < float(np.sqrt(np.mean(audio**2))) < 0.3  # the 0.3-amplitude sine
    assert abs(read_audio(grey_mp4, sampling_rate=8000).size - 3 * 8000) <= 1024
    wav = grey_video(tmp_path / "speech.wav", video=False)  # an audio file, no video stream
    assert abs(read_audio(wav, start_time=0.5).size - 2.5 * AUDIO_RATE) <= 1024
    silent = grey_video(tmp_path / "silent.mp4", frames=12, audio=False)
    assert read_audio(silent, missing_ok=True) is None
    with pytest.raises(VideoDecodeError, match=r"media file .* has no audio stream \(streams: video\)"):
        read_audio(silent)
    with pytest.raises(EmptyRangeError, match="no audio of"):
        read_audio(grey_mp4, start_time=5.0, end_time=6.0)


def test_a_truncated_mp4_is_a_decode_error_at_every_length():
    data = encode_video(np.full((3, 16, 16, 3), 80, np.uint8), fps=4, format="mp4")
    for length in range(8, len(data), max(1, len(data) // 97)):
        try:
            probe_video(data[:length])
        except ValueError:
            pass  # VideoDecodeError: what every caller answers as a bad input
