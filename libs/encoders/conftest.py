"""Shared fixtures of the encoder tests: tiny encoders (built once per session) and tiny media files."""

from __future__ import annotations

import os

import pytest
import torch

from libs.encoders.testing import make_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models on a shared 2-core machine: intra-op threads only add spin-waiting (30x slower per matmul).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def video_path(tmp_path_factory) -> str:
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture(scope="session")
def silent_video_path(tmp_path_factory) -> str:
    return make_video(tmp_path_factory.mktemp("media") / "silent.mp4", frames=12, audio=False)


@pytest.fixture(scope="session")
def tiny_text():
    from libs.encoders.testing import tiny_text_encoder

    return tiny_text_encoder()


@pytest.fixture(scope="session")
def tiny_clip():
    from libs.encoders.testing import tiny_frame_encoder

    return tiny_frame_encoder("clip")


@pytest.fixture(scope="session")
def tiny_siglip():
    from libs.encoders.testing import tiny_frame_encoder

    return tiny_frame_encoder("siglip")


@pytest.fixture(scope="session")
def tiny_asr():
    from libs.encoders.testing import tiny_speech_recognizer

    return tiny_speech_recognizer()


@pytest.fixture(scope="session")
def tiny_segment(tiny_text, tiny_clip, tiny_asr):
    from libs.encoders.segment import SegmentEncoder, SegmentEncoderConfig

    return SegmentEncoder(
        tiny_text, tiny_clip, tiny_asr, config=SegmentEncoderConfig(speech_tokens=16, comment_tokens=16)
    )
