"""Speech recognition (ASR) with Whisper through transformers; log-mel features without torchaudio.

    asr = SpeechRecognizer.from_pretrained("openai/whisper-small", config=SpeechConfig(language="zh"))
    texts = asr.transcribe([waveform], sampling_rate=16_000)     # waveform: (n,) float in [-1, 1]

Our choices:

- Features come from `WhisperFeatureExtractor` (numpy STFT and mel filters; no torchaudio).
- Audio longer than the model's window (30 s for released Whisper checkpoints) is cut into consecutive
  windows transcribed independently and joined with a space; live-stream segments are usually shorter.
- Audio at another sampling rate is resampled linearly (`np.interp`); decode files with
  `libs.encoders.video.read_audio`, which resamples properly through FFmpeg.
- Decoding is greedy (`num_beams=1`) so that batched and one-by-one transcripts agree; `language` and `task`
  are passed to Whisper's `generate` when set (multilingual checkpoints), else Whisper detects the language.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from libs.encoders.base import Encoder, pick_device, torch_dtype
from libs.encoders.cache import CacheEntry, EmbeddingCache, content_digest
from libs.encoders.errors import EmptyInputError, InputTypeError, UnsupportedModelError
from libs.encoders.hub import checkpoint_name

logger = logging.getLogger(__name__)

WHISPER_SAMPLING_RATE = 16_000


@dataclass(frozen=True)
class SpeechConfig:
    language: str | None = None
    task: str = "transcribe"
    max_new_tokens: int = 128
    batch_size: int = 8
    device: str | None = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task: expected 'transcribe' or 'translate', got {self.task!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        torch_dtype(self.dtype)


class SpeechRecognizer(Encoder):
    """Whisper ASR: mono waveforms -> transcripts."""

    VERSION = "1"

    def __init__(
        self,
        model: torch.nn.Module,
        feature_extractor: Any,
        tokenizer: Any,
        *,
        name: str = "asr",
        config: SpeechConfig | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        if getattr(model.config, "model_type", "") != "whisper":
            raise UnsupportedModelError(
                f"model: expected a Whisper model, got model_type={getattr(model.config, 'model_type', None)!r}"
            )
        self.config = config or SpeechConfig()
        self.name = name
        self.cache = cache
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.device = pick_device(self.config.device)
        self.model = model.to(device=self.device, dtype=torch_dtype(self.config.dtype)).eval()
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.window_samples = int(feature_extractor.n_samples)
        self.forward_calls = 0

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        config: SpeechConfig | None = None,
        cache: EmbeddingCache | None = None,
        **model_kwargs: Any,
    ) -> SpeechRecognizer:
        from transformers import (
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
            WhisperTokenizerFast,
        )

        model = WhisperForConditionalGeneration.from_pretrained(name_or_path, **model_kwargs)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(name_or_path)
        tokenizer = WhisperTokenizerFast.from_pretrained(name_or_path)
        return cls(
            model,
            feature_extractor,
            tokenizer,
            name=checkpoint_name(name_or_path),
            config=config,
            cache=cache,
        )

    def _fingerprint_config(self) -> dict[str, Any]:
        return {
            "asr": asdict(self.config) | {"device": None},
            "model_config": self.model.config.to_dict(),
            "generation_config": self.model.generation_config.to_dict(),
            "features": self.feature_extractor.to_dict(),
        }

    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        *,
        sampling_rate: int = WHISPER_SAMPLING_RATE,
        field: str = "audio",
    ) -> list[str]:
        """One transcript per waveform (mono float, `sampling_rate` Hz)."""
        if isinstance(audios, np.ndarray):
            raise InputTypeError(field, "expected a sequence of waveforms; wrap a single one in a list")
        waves = [
            self.prepare(a, sampling_rate, f"{field}[{i}]" if len(audios) > 1 else field)
            for i, a in enumerate(audios)
        ]
        entries = self._cached_map("transcript", waves, [content_digest(w) for w in waves], self._compute)
        return [e.metadata["text"] for e in entries]

    def prepare(self, audio: Any, sampling_rate: int, name: str = "audio") -> np.ndarray:
        """A validated mono float32 waveform at the model's rate (`InputTypeError`/`EmptyInputError` name `name`)."""
        if not isinstance(audio, np.ndarray):
            raise InputTypeError(name, f"expected a numpy waveform, got {type(audio).__name__}")
        if audio.dtype not in (np.float32, np.float64):
            raise InputTypeError(
                name,
                f"expected float samples in [-1, 1], got dtype {audio.dtype} (int16 PCM: divide by 32768)",
            )
        if audio.ndim != 1:
            raise InputTypeError(name, f"expected a mono waveform of shape (n,), got {tuple(audio.shape)}")
        if audio.size == 0:
            raise EmptyInputError(name, "empty waveform")
        if not np.isfinite(audio).all():
            raise InputTypeError(name, "waveform has NaN or infinite samples")
        wave = audio.astype(np.float32)
        if sampling_rate != self.sampling_rate:
            n_out = max(1, round(wave.size * self.sampling_rate / sampling_rate))
            positions = np.arange(n_out, dtype=np.float64) * (sampling_rate / self.sampling_rate)
            wave = np.interp(positions, np.arange(wave.size), wave).astype(np.float32)
        return wave

    @torch.inference_mode()
    def _compute(self, waves: list[np.ndarray]) -> list[CacheEntry]:
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, wave in enumerate(waves):
            for start in range(0, wave.size, self.window_samples):
                windows.append(wave[start : start + self.window_samples])
                owner.append(i)
        texts: list[list[str]] = [[] for _ in waves]
        gen_kwargs: dict[str, Any] = {"max_new_tokens": self.config.max_new_tokens, "num_beams": 1}
        if self.config.language is not None:
            gen_kwargs |= {"language": self.config.language, "task": self.config.task}
        dtype = torch_dtype(self.config.dtype)
        for start in range(0, len(windows), self.config.batch_size):
            chunk = windows[start : start + self.config.batch_size]
            features = self.feature_extractor(
                chunk, sampling_rate=self.sampling_rate, return_tensors="pt"
            ).input_features  # (B, n_mels, frames)
            self.forward_calls += 1
            ids = self.model.generate(features.to(device=self.device, dtype=dtype), **gen_kwargs)
            decoded = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for j, text in enumerate(decoded):
                texts[owner[start + j]].append(text.strip())
        return [CacheEntry({}, {"text": " ".join(t for t in parts if t)}) for parts in texts]
