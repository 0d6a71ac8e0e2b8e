import numpy as np
import pytest

from libs.encoders.errors import EmptyInputError, InputTypeError, UnsupportedModelError
from libs.encoders.speech import SpeechRecognizer

RATE = 16_000


def _waves():
    rng = np.random.default_rng(0)
    return [
        (0.1 * rng.standard_normal(RATE)).astype(np.float32),
        (0.3 * np.sin(np.arange(RATE // 2) / RATE * 2 * np.pi * 220)).astype(np.float32),
    ]


def test_transcribe_is_deterministic_and_batching_equals_one_by_one(tiny_asr):
    waves = _waves()
    texts = tiny_asr.transcribe(waves)
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
    assert tiny_asr.transcribe(waves) == texts
    assert [tiny_asr.transcribe([w])[0] for w in waves] == texts


def test_long_audio_is_cut_into_windows(tiny_asr):
    wave = _waves()[0]
    long = np.concatenate([wave, wave, wave[: RATE // 2]])  # 2.5 s; the tiny window is 2 s
    calls = tiny_asr.forward_calls
    text = tiny_asr.transcribe([long])[0]
    assert tiny_asr.forward_calls == calls + 1  # both windows in one batch
    assert len(text.split()) > len(tiny_asr.transcribe([long[: 2 * RATE]])[0].split())


def test_resamples_other_rates(tiny_asr):
    wave = _waves()[1]
    at_8k = wave[::2].copy()
    assert tiny_asr.prepare(at_8k, 8000).shape == wave.shape
    assert isinstance(tiny_asr.transcribe([at_8k], sampling_rate=8000)[0], str)


def test_bad_audio_names_the_field(tiny_asr):
    with pytest.raises(InputTypeError, match="int16"):
        tiny_asr.transcribe([np.zeros(100, np.int16)])
    with pytest.raises(InputTypeError, match=r"audio\[1\]: expected a mono"):
        tiny_asr.transcribe([np.zeros(100, np.float32), np.zeros((2, 100), np.float32)])
    with pytest.raises(EmptyInputError, match="audio: empty"):
        tiny_asr.transcribe([np.zeros(0, np.float32)])
    with pytest.raises(InputTypeError, match="wrap a single one"):
        tiny_asr.transcribe(np.zeros(100, np.float32))


def test_rejects_non_whisper_models(tiny_text, tiny_asr):
    with pytest.raises(UnsupportedModelError):
        SpeechRecognizer(tiny_text.model, tiny_asr.feature_extractor, tiny_asr.tokenizer)
