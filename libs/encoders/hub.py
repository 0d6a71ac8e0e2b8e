"""Finding optional files of a checkpoint given as a local directory or a hub id (read from the local hub cache
when offline)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def optional_file(name_or_path: str | os.PathLike[str], filename: str) -> Path | None:
    """The local path of `filename` in a checkpoint directory or hub repo, or None when it has none."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        candidate = local / filename
        return candidate if candidate.is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(
            str(name_or_path),
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError as exc:
        logger.debug("no %s in %s: %s", filename, name_or_path, exc)
        return None
    return Path(found) if found else None


def optional_json(name_or_path: str | os.PathLike[str], filename: str) -> dict[str, Any] | None:
    path = optional_file(name_or_path, filename)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def checkpoint_name(name_or_path: str | os.PathLike[str]) -> str:
    """A short display name: the hub id as given, or the directory's name."""
    local = Path(name_or_path).expanduser()
    return local.resolve().name if local.is_dir() else str(name_or_path)
