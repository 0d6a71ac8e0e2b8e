"""The dialogue service's media flags reach the engine's settings: --asr-model and --max-frames, from the
command line or their KMONO_DIALOGUE_* variables, with the defaults of DialogueSettings."""

from __future__ import annotations

import argparse

from generation.dialogue.serving.settings import DialogueSettings
from services.dialogue.config import DialogueServiceConfig


def config(argv: list[str]) -> DialogueServiceConfig:
    parser = argparse.ArgumentParser()
    DialogueServiceConfig.add_arguments(parser)
    return DialogueServiceConfig.from_args(parser.parse_args(argv))


def test_media_flags_default_to_the_settings_and_read_their_variables(monkeypatch):
    monkeypatch.delenv("KMONO_DIALOGUE_ASR_MODEL", raising=False)
    monkeypatch.delenv("KMONO_DIALOGUE_MAX_FRAMES", raising=False)
    defaults = config([]).settings
    assert (defaults.asr_model, defaults.max_frames) == (
        DialogueSettings().asr_model,
        DialogueSettings().max_frames,
    )
    assert defaults.asr_model == ""  # no ASR unless asked for

    settings = config(["--asr-model", "/models/whisper-small", "--max-frames", "2"]).settings
    assert (settings.asr_model, settings.max_frames) == ("/models/whisper-small", 2)

    monkeypatch.setenv("KMONO_DIALOGUE_ASR_MODEL", "/srv/asr")
    monkeypatch.setenv("KMONO_DIALOGUE_MAX_FRAMES", "6")
    settings = config([]).settings
    assert (settings.asr_model, settings.max_frames) == ("/srv/asr", 6)
