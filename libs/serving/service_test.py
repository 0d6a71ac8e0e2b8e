"""The shared flags of services that serve model folders (rank, rerank): flag over environment over default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.serving.service import ModelFoldersServiceConfig

EMBEDDED = Path("/embedded/model")


@dataclass(frozen=True)
class ToyConfig(ModelFoldersServiceConfig):
    ENV_PREFIX = "KMONO_TOY"
    DEFAULT_MODEL = EMBEDDED
    FOLDER_HELP = "a toy model folder"


def parse(*flags: str) -> ToyConfig:
    parser = argparse.ArgumentParser()
    ToyConfig.add_arguments(parser)
    config = ToyConfig.from_args(parser.parse_args(list(flags)))
    assert isinstance(config, ToyConfig)
    return config


def test_model_folders_come_from_flags_then_environment_then_the_embedded_model(monkeypatch):
    monkeypatch.delenv("KMONO_TOY_MODELS", raising=False)
    monkeypatch.delenv("KMONO_TOY_TORCH_THREADS", raising=False)
    assert parse().models == (EMBEDDED,) == ToyConfig().models == ToyConfig(models=()).models
    assert parse().torch_threads == 0
    monkeypatch.setenv("KMONO_TOY_MODELS", "/m/a,,/m/b")
    monkeypatch.setenv("KMONO_TOY_TORCH_THREADS", "3")
    assert parse().models == (Path("/m/a"), Path("/m/b")) and parse().torch_threads == 3
    flagged = parse("--model", "/m/c", "--model", "/m/d", "--torch-threads", "1", "--port", "9999")
    assert flagged.models == (Path("/m/c"), Path("/m/d")) and flagged.torch_threads == 1
    assert flagged.server.port == 9999


def test_help_names_the_service_group_and_its_environment_variables():
    parser = argparse.ArgumentParser()
    ToyConfig.add_arguments(parser)
    text = parser.format_help()
    assert "toy:" in text and "KMONO_TOY_MODELS" in text and "KMONO_TOY_TORCH_THREADS" in text
    assert "a toy model folder" in text and str(EMBEDDED) in text


def test_a_negative_thread_count_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse("--torch-threads", "-1")
    assert "--torch-threads" in capsys.readouterr().err
