"""Settings of the DialogueService process: flags whose defaults come from KMONO_* environment variables.

Sessions live in `<data dir>/dialogue/sessions.db` (SQLite, WAL), beside the other services' stores when they
share a data directory. The engine's limits and defaults are `generation.dialogue.serving.settings.DialogueSettings`:
the flags below override the ones an operator tunes; their defaults are read from there, never repeated."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from generation.dialogue.backends.registry import BACKEND_HELP
from generation.dialogue.serving.settings import DialogueSettings
from libs.cli.flags import positive_int
from libs.media.policy import MediaPolicy, add_media_arguments, media_policy_from_args
from libs.serving.service import BasicServiceConfig

SERVICE_DIR = "dialogue"
LIMIT_FLAGS = (
    "max_turns",
    "max_message_chars",
    "max_attachment_bytes",
    "max_attachments",
    "max_output_tokens",
    "max_frames",
)
"""DialogueSettings fields exposed as `--max-...` flags (env KMONO_DIALOGUE_MAX_...)."""


@dataclass(frozen=True)
class DialogueServiceConfig(BasicServiceConfig):
    """Server settings, where sessions are kept, and the engine's settings."""

    data_dir: Path = Path("var")
    settings: DialogueSettings = field(default_factory=DialogueSettings)
    media: MediaPolicy = field(default_factory=MediaPolicy)
    """Media references requests may name (--media-root / --allow-scheme); empty: inline data only."""

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / SERVICE_DIR

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        env = os.environ.get
        defaults = DialogueSettings()
        group = parser.add_argument_group("dialogue")
        group.add_argument(
            "--data-dir",
            type=Path,
            default=Path(env("KMONO_DATA_DIR", "var")),
            help="where sessions are kept across restarts, in dialogue/sessions.db (env KMONO_DATA_DIR; "
            "default: ./var)",
        )
        group.add_argument(
            "--backend",
            default=env("KMONO_DIALOGUE_BACKEND", defaults.backend),
            help=f"{BACKEND_HELP} (env KMONO_DIALOGUE_BACKEND; default: %(default)s)",
        )
        group.add_argument(
            "--asr-model",
            metavar="DIR",
            default=env("KMONO_DIALOGUE_ASR_MODEL", defaults.asr_model),
            help="Whisper checkpoint (directory or hub id, e.g. openai/whisper-small) that transcribes videos and "
            "live slices attached without a transcript, once, when attached (env KMONO_DIALOGUE_ASR_MODEL; "
            "default: none)",
        )
        for name in LIMIT_FLAGS:
            variable = f"KMONO_DIALOGUE_{name.upper()}"
            group.add_argument(
                f"--{name.replace('_', '-')}",
                type=positive_int,
                default=env(variable, str(getattr(defaults, name))),
                help=f"{_doc(name)} (env {variable}; default: %(default)s)",
            )
        add_media_arguments(parser, "KMONO_DIALOGUE")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DialogueServiceConfig:
        base = BasicServiceConfig.from_args(args)
        settings = DialogueSettings(
            backend=args.backend,
            asr_model=args.asr_model,
            **{name: getattr(args, name) for name in LIMIT_FLAGS},
        )
        return cls(
            server=base.server, data_dir=args.data_dir, settings=settings, media=media_policy_from_args(args)
        )


def _doc(name: str) -> str:
    return {
        "max_turns": "turns (user and assistant) a session may hold",
        "max_message_chars": "characters of one user message",
        "max_attachment_bytes": "bytes of one attachment's media",
        "max_attachments": "attachments per request",
        "max_output_tokens": "reply tokens when a request says 0 (a request may ask for up to 8 times this)",
        "max_frames": "frames of the session's videos and images a vision-language LM is shown per prompt",
    }[name]


CONFIG_TYPE = DialogueServiceConfig
