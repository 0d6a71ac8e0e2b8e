"""Content-addressed on-disk cache of encoder outputs, and the fingerprints that key it.

    cache = EmbeddingCache("~/.cache/kmono/encoders")
    key = cache_key(encoder.fingerprint, "text", content_digest("a sentence"))
    entry = cache.get(key)                      # CacheEntry(arrays, metadata) or None
    if entry is None:
        cache.put(key, {"pooled": vec}, {"note": "..."})

**Keys.** A key is the SHA-256 of the encoder's fingerprint, the kind of output and a digest of the input's
content. An encoder's fingerprint hashes its class, its code version (`VERSION`, bumped when the
preprocessing or pooling changes), its configuration and *the bytes of its weights*, so a fine-tuned
checkpoint saved to the same directory, a changed max-token limit or a new pooling never reads a vector
written by the old encoder: it simply misses.

**Storage.** One file per key, `ROOT/v1/ab/<key>.safetensors` (safetensors bytes: named float/bool arrays
plus a string->string metadata header, e.g. a transcript). Writers write a temporary file in the same
directory and `os.replace` it onto the final name, which is atomic on POSIX: several processes writing the
same key at once each publish a whole file and the last rename wins; since the content is a function of the
key, every winner holds the same vectors. Readers never see a partial file. A file that does not parse (a
disk that filled up, a crash of the machine before the data reached the disk) reads as a miss and is
removed. Nothing is ever locked, so the cache is safe on a local disk shared by many processes; on network
file systems it relies on their rename being atomic.

The cache never evicts; remove the directory (or a shard of it) to reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

logger = logging.getLogger(__name__)

LAYOUT_VERSION = "v1"
DEFAULT_CACHE_DIR = "~/.cache/kmono/encoders"


def default_cache_dir() -> str:
    """`$KMONO_ENCODER_CACHE`, else `$XDG_CACHE_HOME/kmono/encoders`, else ~/.cache/kmono/encoders."""
    if os.environ.get("KMONO_ENCODER_CACHE"):
        return os.environ["KMONO_ENCODER_CACHE"]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "kmono", "encoders")
    return os.path.expanduser(DEFAULT_CACHE_DIR)


def content_digest(*parts: Any) -> str:
    """SHA-256 of the given parts (str, bytes, numpy arrays, numbers, None, nested lists/tuples/dicts).

    Arrays contribute their dtype, shape and bytes, so equal pixels give equal digests and a float64 copy of
    a float32 array does not.
    """
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if value is None:
        h.update(b"N")
    elif isinstance(value, bytes | bytearray | memoryview):
        h.update(b"B" + struct.pack("<Q", len(value)))
        h.update(value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        h.update(b"S" + struct.pack("<Q", len(data)) + data)
    elif isinstance(value, bool | int | float | np.generic):
        h.update(b"V" + repr(value.item() if isinstance(value, np.generic) else value).encode())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        h.update(b"A" + f"{array.dtype.str}{array.shape}".encode())
        h.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    elif isinstance(value, Mapping):
        h.update(b"M" + struct.pack("<Q", len(value)))
        for k in sorted(value):
            _feed(h, str(k))
            _feed(h, value[k])
    elif isinstance(value, list | tuple):
        h.update(b"L" + struct.pack("<Q", len(value)))
        for item in value:
            _feed(h, item)
    else:
        raise TypeError(f"cannot hash a {type(value).__name__}")


def file_digest(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (streamed), memoised per (path, size, mtime) within the process."""
    stat = os.stat(path)
    memo_key = (os.fspath(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _FILE_DIGESTS.get(memo_key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    digest = h.hexdigest()
    _FILE_DIGESTS[memo_key] = digest
    return digest


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(module: Any) -> str:
    """SHA-256 over a torch module's state dict (names, dtypes, shapes and bytes), in name order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def config_digest(config: Any) -> str:
    """SHA-256 of a JSON-able configuration (dataclass `asdict`, a transformers config's `to_dict()`, ...)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(fingerprint: str, kind: str, digest: str) -> str:
    """The cache key of one output: encoder fingerprint x output kind x input content digest."""
    return hashlib.sha256(f"{fingerprint}\0{kind}\0{digest}".encode()).hexdigest()


class CacheEntry(NamedTuple):
    arrays: dict[str, np.ndarray]
    metadata: dict[str, str]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0


class EmbeddingCache:
    """Content-addressed store of named arrays; see the module docstring for keys and concurrency."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self._dir = self.root / LAYOUT_VERSION
        self._dir.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"key: expected a hex digest, got {key!r}")
        return self._dir / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> CacheEntry | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        try:
            entry = CacheEntry(st_load(data), _read_metadata(data))
        except Exception as exc:  # a torn or foreign file: drop it and recompute
            logger.warning("dropping unreadable cache file %s: %s", path, exc)
            path.unlink(missing_ok=True)
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return entry

    def put(
        self, key: str, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
    ) -> None:
        path = self.path(key)
        payload = st_save(
            {name: np.ascontiguousarray(a) for name, a in arrays.items()},
            metadata=dict(metadata) if metadata else None,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.stats.writes += 1

    def __len__(self) -> int:
        return sum(1 for _ in self._dir.glob("*/*.safetensors"))


def _read_metadata(data: bytes) -> dict[str, str]:
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__") or {})
