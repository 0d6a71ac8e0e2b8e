"""The manifest of a staged model: every file's sha256 and size, where the files came from, and when.

`<models dir>/<name>/kmono-manifest.json` is written last, inside the folder, before the folder is moved into
place (store.py), so a folder with a manifest is a complete pull and `verify` can prove that it still is:

    {"format": 1, "name": "sam2", "layout": "transformers", "source": "facebook/sam2.1-hiera-tiny",
     "source_type": "hub", "revision": "main", "commit": "9a1b...", "requires": [],
     "created": "2026-12-01T10:00:00+00:00", "total_size": 156032471,
     "files": {"config.json": {"size": 7123, "sha256": "e3b0..."}, "model.safetensors": {...}}}

diffusers and transformers ignore a JSON file they do not know, so the manifest travels with the weights
(copying the folder elsewhere keeps it verifiable).

Hashing reads 8 MiB at a time and shows one byte-counting progress bar per model (tqdm on a terminal; a log
line every 30 s otherwise, e.g. in an initContainer's log); small models (the embedded defaults) show none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from libs.modelstore.errors import ManifestError

logger = logging.getLogger(__name__)

MANIFEST_NAME = "kmono-manifest.json"
FORMAT = 1
CHUNK_BYTES = 8 << 20
PROGRESS_MIN_BYTES = 64 << 20
"""Below this many bytes in total, no progress bar (a bar for a 7 MB default is noise)."""
LOG_EVERY_SECONDS = 30.0


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What `kmono models pull` staged into one folder."""

    name: str
    layout: str
    source: str
    """The hub id, or the absolute path of the local directory it was copied from."""
    source_type: str
    """`hub` or `local`."""
    revision: str | None
    """The revision asked for (hub; `main` unless --revision), None for a directory."""
    commit: str | None
    """The hub commit the files are from (hub), None for a directory."""
    files: dict[str, FileEntry]
    requires: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files.values())

    @property
    def origin(self) -> str:
        """`source@commit` (hub, short commit) or the source path."""
        if self.commit:
            return f"{self.source}@{self.commit[:10]}"
        return self.source

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "layout": self.layout,
            "source": self.source,
            "source_type": self.source_type,
            "revision": self.revision,
            "commit": self.commit,
            "requires": list(self.requires),
            "created": self.created,
            "total_size": self.total_size,
            "files": {
                path: {"size": entry.size, "sha256": entry.sha256}
                for path, entry in sorted(self.files.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r} (this kmono reads {FORMAT})")
        return cls(
            name=str(data["name"]),
            layout=str(data["layout"]),
            source=str(data["source"]),
            source_type=str(data["source_type"]),
            revision=data.get("revision"),
            commit=data.get("commit"),
            files={
                str(path): FileEntry(int(entry["size"]), str(entry["sha256"]))
                for path, entry in data["files"].items()
            },
            requires=tuple(data.get("requires") or ()),
            created=str(data.get("created", "")),
        )


def manifest_path(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / MANIFEST_NAME


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest of a staged folder; ManifestError when it is missing or unreadable."""
    path = manifest_path(folder)
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ManifestError(
            f"{folder}: no {MANIFEST_NAME} (not staged by `kmono models pull`, or the pull did not finish)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None


def write_manifest(folder: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write the manifest (to a temporary name first, so a crash never leaves half a manifest)."""
    path = manifest_path(folder)
    tmp = path.with_name(f".{MANIFEST_NAME}.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----- progress -----


class Progress(Protocol):
    def update(self, n: int) -> object: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass


class _LogProgress:
    """A progress bar for logs (no terminal): one line every LOG_EVERY_SECONDS, and one at the end."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.started = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_SECONDS:
            self.last = now
            self._log(now)

    def _log(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        logger.info(
            "%s: %.0f%% (%s of %s, %s/s)",
            self.desc,
            100.0 * self.done / max(self.total, 1),
            human_size(self.done),
            human_size(self.total),
            human_size(rate),
        )

    def close(self) -> None:
        self._log(time.monotonic())


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Progress]:
    """A byte-counting bar over `total` bytes: tqdm on a terminal, log lines otherwise, nothing when small."""
    if not enabled or total < PROGRESS_MIN_BYTES:
        yield _NoProgress()
    elif sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:
            yield bar
    else:
        bar = _LogProgress(total, desc)
        yield bar
        bar.close()


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ----- hashing -----


def _pump(src: BinaryIO, sinks: Iterable[Any], progress: Progress, digest: Any) -> int:
    size = 0
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    while n := src.readinto(buffer):
        chunk = view[:n]
        digest.update(chunk)
        for sink in sinks:
            sink.write(chunk)
        size += n
        progress.update(n)
    return size


def hash_file(path: str | os.PathLike[str], progress: Progress | None = None) -> FileEntry:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        size = _pump(src, (), progress or _NoProgress(), digest)
    return FileEntry(size, digest.hexdigest())


def copy_and_hash(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], progress: Progress | None = None
) -> FileEntry:
    """Copy one file and hash what was read, in one pass (the bytes hashed are the bytes written)."""
    digest = hashlib.sha256()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        size = _pump(reader, (writer,), progress or _NoProgress(), digest)
    return FileEntry(size, digest.hexdigest())


def hash_files(
    root: str | os.PathLike[str], files: Iterable[str], desc: str, progress: bool = True
) -> dict[str, FileEntry]:
    """{relative path: FileEntry} of files under root, with one progress bar over their bytes."""
    root = Path(root)
    files = sorted(files)
    total = sum((root / rel).stat().st_size for rel in files)
    with progress_bar(total, desc, progress) as bar:
        return {rel: hash_file(root / rel, bar) for rel in files}


# ----- comparing a folder with its manifest -----


@dataclass(frozen=True)
class Problem:
    """One finding of `verify`: which file, and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def compare_files(
    folder: str | os.PathLike[str],
    manifest: Manifest,
    present: Iterable[str],
    *,
    quick: bool = False,
    progress: bool = True,
) -> list[Problem]:
    """Files missing, of another size, with another sha256 (unless `quick`), or not in the manifest."""
    folder = Path(folder)
    present = set(present) - {MANIFEST_NAME}
    problems = [
        Problem(path, "unexpected file (not in the manifest; remove it or pull again)")
        for path in sorted(present - set(manifest.files))
    ]
    to_hash = []
    for path, entry in sorted(manifest.files.items()):
        if path not in present:
            problems.append(Problem(path, "missing"))
            continue
        size = (folder / path).stat().st_size
        if size != entry.size:
            problems.append(Problem(path, f"size {size} bytes, the manifest says {entry.size}"))
        elif not quick:
            to_hash.append(path)
    total = sum(manifest.files[path].size for path in to_hash)
    with progress_bar(total, f"verify {manifest.name}", progress) as bar:
        for path in to_hash:
            got = hash_file(folder / path, bar).sha256
            if got != manifest.files[path].sha256:
                problems.append(
                    Problem(
                        path,
                        f"sha256 mismatch (manifest {manifest.files[path].sha256[:12]}..., file {got[:12]}...)",
                    )
                )
    return problems
