"""Tiny random-initialised encoders for tests and smoke runs (seeded: the same seed gives the same weights).

    text = tiny_text_encoder()              # BERT, hidden 32, 2 layers, 64-word vocabulary
    frames = tiny_frame_encoder("siglip")   # 32x32 input, patch 8, hidden 32
    asr = tiny_speech_recognizer()          # Whisper, d_model 16, 2-second window, 16 mel bins
    seg = tiny_segment_encoder()            # all three, with SegmentEncoderConfig(speech_tokens=16, ...)

The numbers they produce mean nothing; every code path of the real models runs through them. Media helpers:
`random_frames(n)` (uint8 RGB) and `make_video(path)` (an MPEG-4 clip whose frame i is grey level 8*i, with a
440 Hz AAC track), so frame sampling can be checked by brightness.
"""

from __future__ import annotations

import av
import numpy as np
import torch

from libs.encoders.cache import EmbeddingCache
from libs.encoders.frames import FrameEncoder, FrameEncoderConfig
from libs.encoders.segment import SegmentEncoder, SegmentEncoderConfig
from libs.encoders.speech import SpeechConfig, SpeechRecognizer
from libs.encoders.text import TextEncoder, TextEncoderConfig

TINY_WORDS = (
    "the a an is are was on in at of to and or but not it this that with for from by as be have has i you "
    "he she we they cat dog man woman guitar play plays playing music stock market fell today live stream "
    "gift so cute where here hello world good great love nice wow haha"
).split()


def tiny_vocab() -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'"]
    words = [w for w in TINY_WORDS if w not in letters]
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab: dict[str, int] = {}
    for token in [*specials, *letters, *words, *pieces]:
        vocab.setdefault(token, len(vocab))
    return vocab


def tiny_text_encoder(
    *, seed: int = 0, config: TextEncoderConfig | None = None, cache: EmbeddingCache | None = None
) -> TextEncoder:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = tiny_vocab()
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)  # vocab=, not vocab_file= (transformers 5)
    torch.manual_seed(seed)
    model = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=128,
        )
    )
    return TextEncoder(model, tokenizer, name=f"tiny-bert-{seed}", config=config, cache=cache)


def tiny_vision_config() -> dict:
    return {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }


def tiny_frame_model(kind: str = "clip", *, seed: int = 0) -> torch.nn.Module:
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    torch.manual_seed(seed)
    if kind == "clip":
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny_vision_config(), projection_dim=24))
    if kind == "siglip":
        return SiglipVisionModel(SiglipVisionConfig(**tiny_vision_config()))
    raise ValueError(f"kind: expected 'clip' or 'siglip', got {kind!r}")


def tiny_frame_encoder(
    kind: str = "clip",
    *,
    seed: int = 0,
    config: FrameEncoderConfig | None = None,
    cache: EmbeddingCache | None = None,
) -> FrameEncoder:
    return FrameEncoder(
        tiny_frame_model(kind, seed=seed), name=f"tiny-{kind}-{seed}", config=config, cache=cache
    )


def tiny_speech_recognizer(
    *, seed: int = 0, config: SpeechConfig | None = None, cache: EmbeddingCache | None = None
) -> SpeechRecognizer:
    from transformers import (
        BertTokenizerFast,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    features = WhisperFeatureExtractor(feature_size=16, chunk_length=2, sampling_rate=16_000)
    vocab = tiny_vocab()
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(
        WhisperConfig(
            vocab_size=len(vocab),
            num_mel_bins=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            d_model=16,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_source_positions=features.nb_max_frames // 2,
            max_target_positions=32,
            pad_token_id=vocab["[PAD]"],
            bos_token_id=vocab["[CLS]"],
            eos_token_id=vocab["[SEP]"],
            decoder_start_token_id=vocab["[CLS]"],
            begin_suppress_tokens=[vocab["[SEP]"]],
            suppress_tokens=[],
        )
    )
    model.generation_config.begin_suppress_tokens = [vocab["[SEP]"]]
    model.generation_config.suppress_tokens = []
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    config = config or SpeechConfig(max_new_tokens=6)
    return SpeechRecognizer(
        model, features, tokenizer, name=f"tiny-whisper-{seed}", config=config, cache=cache
    )


def tiny_segment_encoder(
    *,
    seed: int = 0,
    kind: str = "clip",
    with_speech: bool = True,
    config: SegmentEncoderConfig | None = None,
    cache: EmbeddingCache | None = None,
) -> SegmentEncoder:
    return SegmentEncoder(
        tiny_text_encoder(seed=seed),
        tiny_frame_encoder(kind, seed=seed),
        tiny_speech_recognizer(seed=seed) if with_speech else None,
        config=config or SegmentEncoderConfig(speech_tokens=16, comment_tokens=16),
        cache=cache,
    )


VIDEO_FPS = 10
VIDEO_FRAMES = 30  # 3 s
AUDIO_RATE = 16_000


def frame_value(index: int) -> int:
    """The grey level of frame `index` in `make_video` (decoded values are within a few levels of it)."""
    return 8 * index


def make_video(path, *, frames: int = VIDEO_FRAMES, fps: int = VIDEO_FPS, audio: bool = True) -> str:
    """A 64x48 MPEG-4 video whose frame i is a flat grey of level 8*i, with a 440 Hz AAC track."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        audio_stream = container.add_stream("aac", rate=AUDIO_RATE) if audio else None
        for i in range(frames):
            image = np.full((48, 64, 3), frame_value(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
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
    return str(path)


def random_frames(n: int, height: int = 40, width: int = 52, seed: int = 0) -> np.ndarray:
    """(n, height, width, 3) uniform random uint8 RGB frames."""
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)
