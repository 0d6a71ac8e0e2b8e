import numpy as np
import pytest

from libs.encoders.errors import DecodeError, EmptyInputError
from libs.encoders.testing import AUDIO_RATE, frame_value
from libs.encoders.video import read_audio, sample_segment_frames, video_duration


def _levels(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 8) for f in frames]  # frame i is grey level 8 * i


def test_samples_k_frames_at_segment_centres(video_path):
    assert video_duration(video_path) == pytest.approx(3.0)
    frames = sample_segment_frames(video_path, 3)
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert _levels(frames) == [5, 15, 25]  # centres 0.5, 1.5, 2.5 s at 10 fps
    assert abs(float(frames[0].mean()) - frame_value(5)) < 3
    assert _levels(sample_segment_frames(video_path, 2, start=1.0, end=2.0)) == [
        13,
        18,
    ]  # first frames at or after 1.25, 1.75 s
    assert _levels(sample_segment_frames(video_path, 1, start=2.0)) == [25]


def test_range_past_the_end_repeats_the_last_frame(video_path):
    assert _levels(sample_segment_frames(video_path, 3, start=2.5, end=10.0)) == [29, 29, 29]


def test_empty_ranges_and_bad_files(video_path, tmp_path):
    with pytest.raises(EmptyInputError, match="empty time range"):
        sample_segment_frames(video_path, 3, start=2.0, end=2.0)
    with pytest.raises(EmptyInputError, match="past the end"):
        sample_segment_frames(video_path, 3, start=5.0)
    with pytest.raises(EmptyInputError, match="no frame"):
        sample_segment_frames(video_path, 3, start=5.0, end=6.0)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DecodeError) as info:
        sample_segment_frames(corrupt, 3, field="segments[2].video")
    assert info.value.field == "segments[2].video"
    with pytest.raises(DecodeError, match="no such file"):
        sample_segment_frames(tmp_path / "missing.mp4", 3)


def test_read_audio_range_and_silent_video(video_path, silent_video_path):
    audio = read_audio(video_path, 1.0, 2.0)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - AUDIO_RATE) <= 1024
    assert 0.15 < float(np.sqrt(np.mean(audio**2))) < 0.3  # the 0.3-amplitude sine
    assert read_audio(silent_video_path, missing_ok=True) is None
    with pytest.raises(DecodeError, match="no audio stream") as info:
        read_audio(silent_video_path, field="segments[1].video")
    assert info.value.field == "segments[1].video"
    with pytest.raises(EmptyInputError, match="no audio"):
        read_audio(video_path, 5.0, 6.0)
