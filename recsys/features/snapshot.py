"""A versioned, immutable snapshot of feature tables and arrays that offline jobs write and training and serving
both read: Parquet for batch reads, one embedded LMDB environment for point lookups, .npy for dense arrays.

    with SnapshotWriter("snapshots/graph-2026-12-06") as writer:
        writer.add_table("neighbours", table, key="key")        # neighbours.parquet + sub-db "neighbours"
        writer.add_array("theta_users", theta)                   # theta_users.npy
        snapshot = writer.commit({"job": "mmbee-expansion"})    # manifest.json, then one rename

    snapshot = Snapshot.open("snapshots/graph-2026-12-06")      # read-only; refuses partial/corrupt ones
    snapshot.version                                            # content hash, e.g. "3f2a9c0d1e4b5a67"
    snapshot.table("neighbours")                                # pyarrow.Table (training: whole columns)
    snapshot.lookup("neighbours", "user:42")                    # {"key": "user:42", ...} or None (serving)
    snapshot.array("theta_users", mmap=True)                    # np.ndarray, never unpickled

Layout of a committed snapshot directory:

    manifest.json       format, version, tables (key column, rows, Arrow schema, digest), arrays (dtype, shape,
                        digest), metadata, and the byte size of every file
    <table>.parquet     one per table
    <array>.npy         one per array (saved and loaded with allow_pickle=False)
    index.lmdb/         ONE LMDB environment, one named sub-db per table: key (UTF-8) -> the row as an Arrow IPC
                        record-batch message (schema kept once, in the manifest); no pickle anywhere

Why these choices:
- *Atomic publication*: everything is written into a hidden sibling directory (`.<name>.partial-<random>`) and
  renamed to the target in one `rename(2)` after the manifest is fsynced: a reader sees either no snapshot or a
  complete one, never a partial one; a crashed writer leaves only a hidden directory. Snapshots are immutable:
  a target that exists is refused.
- *Version = content hash*: sha256 of the logical content (each table's Arrow IPC stream and key column, each
  array's dtype, shape and bytes, and the metadata), first 16 hex digits. Equal content gives an equal version
  whatever the run; any change to a value or to the metadata changes it (keep wall-clock times out of the
  metadata if equal data should keep its version). `Snapshot.open` recomputes the version from the manifest's
  digests (an edited manifest is refused) and checks every file's size (a truncated file is refused);
  `Snapshot.verify()` re-hashes the data itself.
- *One LMDB environment*, opened read-only without a lock file (`lock=False`, safe because nothing writes a
  committed snapshot), so any number of processes read it at once, also from a read-only mount. py-lmdb
  refuses to open one environment twice in a process, so snapshots of the same directory share one handle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.lmdb"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MAX_DBS = 256
_PUT_BATCH = 10_000


class SnapshotError(Exception):
    """A snapshot directory that is missing, partial, corrupt or of another format."""


def _digest_table(table: pa.Table, key: str) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    h = hashlib.sha256(f"key={key}\n".encode())
    h.update(sink.getvalue())
    return h.hexdigest()


def _digest_array(array: np.ndarray) -> str:
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}\n".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _content_version(tables: Mapping, arrays: Mapping, metadata: Any) -> str:
    """Hash of what a reader can see: the data digests and the metadata (sizes and schemas follow from them)."""
    content = {
        "format": FORMAT_VERSION,
        "tables": {name: [t["key"], t["digest"]] for name, t in sorted(tables.items())},
        "arrays": {name: a["digest"] for name, a in sorted(arrays.items())},
        "metadata": metadata,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _EnvRegistry:
    """Process-wide read-only LMDB handles, one per directory, reference-counted (py-lmdb refuses a second open
    of the same environment in one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envs: dict[str, list[Any]] = {}

    def acquire(self, path: Path) -> lmdb.Environment:
        real = os.path.realpath(path)
        with self._lock:
            entry = self._envs.get(real)
            if entry is None:
                env = lmdb.open(real, readonly=True, lock=False, max_dbs=_MAX_DBS, readahead=False)
                entry = self._envs[real] = [env, 0]
            entry[1] += 1
            return entry[0]

    def release(self, path: Path) -> None:
        real = os.path.realpath(path)
        with self._lock:
            entry = self._envs.get(real)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].close()
                del self._envs[real]


_ENVS = _EnvRegistry()


class SnapshotWriter:
    """Writes one snapshot into a hidden temporary directory; `commit` publishes it at `out_dir` in one rename.

    Use it as a context manager: leaving the block without `commit` (or with an exception) deletes the temporary
    directory, so nothing is ever visible at `out_dir` unless committed."""

    def __init__(self, out_dir: str | os.PathLike, *, map_size: int = 64 << 20):
        self.out_dir = Path(out_dir).expanduser().absolute()
        if self.out_dir.exists():
            raise FileExistsError(f"{self.out_dir} exists: snapshots are immutable, write a new directory")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out_dir.parent / f".{self.out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
        self._tmp.mkdir()
        self._map_size = map_size
        self._env: lmdb.Environment | None = None
        self._tables: dict[str, dict[str, Any]] = {}
        self._arrays: dict[str, dict[str, Any]] = {}
        self._done = False

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()

    def _check_name(self, name: str) -> None:
        if self._done:
            raise RuntimeError("this writer is committed or aborted")
        if not _NAME.match(name) or name in (MANIFEST, INDEX):
            raise ValueError(f"name: expected letters, digits, '_', '.', '-' (max 128), got {name!r}")
        if name in self._tables or name in self._arrays:
            raise ValueError(f"name: {name!r} is already in this snapshot")

    def _index(self) -> lmdb.Environment:
        if self._env is None:
            self._env = lmdb.open(
                str(self._tmp / INDEX), map_size=self._map_size, max_dbs=_MAX_DBS, lock=False, sync=False
            )
        return self._env

    def _put_all(self, db_name: bytes, items: list[tuple[bytes, bytes]]) -> None:
        env = self._index()
        db = env.open_db(db_name)
        while True:
            try:
                with env.begin(write=True, db=db) as txn:
                    txn.cursor().putmulti(items)
                return
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)

    def add_table(self, name: str, table: pa.Table, key: str) -> None:
        """Write `table` as `name.parquet` and index every row by its `key` column (unique, non-null strings)."""
        self._check_name(name)
        if len(self._tables) >= _MAX_DBS - 1:
            raise ValueError(f"a snapshot holds at most {_MAX_DBS - 1} tables")
        if key not in table.column_names:
            raise KeyError(f"key: {key!r} is not a column of table {name!r} ({table.column_names})")
        if not (
            pa.types.is_string(table.schema.field(key).type) or pa.types.is_large_string(table[key].type)
        ):
            raise TypeError(f"key: column {key!r} must hold strings, got {table.schema.field(key).type}")
        table = table.combine_chunks()
        keys = table.column(key).to_pylist()
        if table.column(key).null_count:
            raise ValueError(f"key: column {key!r} of table {name!r} has nulls")
        encoded = [k.encode("utf-8") for k in keys]
        if len(set(encoded)) != len(encoded):
            raise ValueError(f"key: column {key!r} of table {name!r} has duplicate keys")
        max_key = self._index().max_key_size()
        if encoded and max(map(len, encoded)) > max_key:
            raise ValueError(f"key: keys of table {name!r} must be at most {max_key} UTF-8 bytes")
        pq.write_table(table, self._tmp / f"{name}.parquet")
        for lo in range(0, table.num_rows, _PUT_BATCH):
            chunk = table.slice(lo, _PUT_BATCH)
            rows = [chunk.slice(i, 1).to_batches()[0].serialize().to_pybytes() for i in range(chunk.num_rows)]
            self._put_all(name.encode(), list(zip(encoded[lo : lo + _PUT_BATCH], rows, strict=True)))
        self._tables[name] = {
            "key": key,
            "rows": table.num_rows,
            "schema": base64.b64encode(table.schema.serialize().to_pybytes()).decode("ascii"),
            "digest": _digest_table(table, key),
        }
        logger.debug("snapshot %s: table %s, %d rows", self.out_dir.name, name, table.num_rows)

    def add_array(self, name: str, array: np.ndarray) -> None:
        """Write `array` as `name.npy` (numeric or fixed-size dtypes only: it is loaded without pickle)."""
        self._check_name(name)
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise TypeError(f"array {name!r}: object dtypes cannot be stored without pickle")
        np.save(self._tmp / f"{name}.npy", array, allow_pickle=False)
        self._arrays[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "digest": _digest_array(array),
        }

    def commit(self, metadata: Mapping[str, Any] | None = None) -> Snapshot:
        """Write the manifest and publish the snapshot at `out_dir` atomically; returns it opened."""
        if self._done:
            raise RuntimeError("this writer is committed or aborted")
        metadata = json.loads(json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False))  # JSON only
        try:
            version = self._publish(metadata)
        except BaseException:
            self.abort()
            raise
        self._done = True
        logger.info(
            "snapshot %s: version %s, %d tables, %d arrays",
            self.out_dir,
            version,
            len(self._tables),
            len(self._arrays),
        )
        return Snapshot.open(self.out_dir)

    def _publish(self, metadata: dict[str, Any]) -> str:
        if self._env is not None:
            self._env.sync(True)
            self._env.close()
            self._env = None
        files = {
            str(path.relative_to(self._tmp)): path.stat().st_size
            for path in sorted(self._tmp.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "format": FORMAT_VERSION,
            "version": _content_version(self._tables, self._arrays, metadata),
            "tables": self._tables,
            "arrays": self._arrays,
            "metadata": metadata,
            "files": files,
        }
        for relative in files:
            _fsync(self._tmp / relative)
        partial = self._tmp / f"{MANIFEST}.partial"
        partial.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync(partial)
        partial.rename(self._tmp / MANIFEST)
        _fsync(self._tmp)
        if self.out_dir.exists():
            raise FileExistsError(f"{self.out_dir} appeared while writing; snapshot not published")
        os.rename(self._tmp, self.out_dir)  # the one step that makes it visible
        _fsync(self.out_dir.parent)
        return manifest["version"]

    def abort(self) -> None:
        """Forget everything written so far (the temporary directory is deleted)."""
        if self._env is not None:
            self._env.close()
            self._env = None
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._done = True


class Snapshot:
    """A committed snapshot, read-only. Open with `Snapshot.open(path)`; `close()` (or a `with` block) releases
    its LMDB handle, which is opened on the first lookup."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self._env: lmdb.Environment | None = None
        self._dbs: dict[str, Any] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike) -> Snapshot:
        path = Path(path).expanduser().absolute()
        if not path.is_dir():
            raise SnapshotError(f"{path}: no such snapshot directory")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise SnapshotError(
                f"{path}: no {MANIFEST}; not a snapshot, or a partial one (snapshots appear only when committed)"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SnapshotError(f"{manifest_path}: corrupt manifest ({error})") from error
        missing = [
            f for f in ("format", "version", "tables", "arrays", "metadata", "files") if f not in manifest
        ]
        if not isinstance(manifest, dict) or missing:
            raise SnapshotError(f"{manifest_path}: corrupt manifest (missing {missing})")
        if manifest["format"] != FORMAT_VERSION:
            raise SnapshotError(
                f"{manifest_path}: snapshot format {manifest['format']}, this reader knows {FORMAT_VERSION}"
            )
        try:
            version = _content_version(manifest["tables"], manifest["arrays"], manifest["metadata"])
        except (KeyError, TypeError, AttributeError) as error:
            raise SnapshotError(f"{manifest_path}: corrupt manifest ({error!r})") from error
        if version != manifest["version"]:
            raise SnapshotError(
                f"{manifest_path}: corrupt manifest (version {manifest['version']} != {version})"
            )
        for relative, size in manifest["files"].items():
            file = path / relative
            if not file.is_file() or file.stat().st_size != size:
                raise SnapshotError(f"{path}: {relative} is missing or truncated (expected {size} bytes)")
        return cls(path, manifest)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Snapshot({str(self.path)!r}, version={self.version!r})"

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.manifest["metadata"]

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted(self.manifest["tables"]))

    @property
    def arrays(self) -> tuple[str, ...]:
        return tuple(sorted(self.manifest["arrays"]))

    def _table_info(self, name: str) -> dict[str, Any]:
        if name not in self.manifest["tables"]:
            raise KeyError(f"table {name!r} is not in snapshot {self.version} (tables: {self.tables})")
        return self.manifest["tables"][name]

    def num_rows(self, name: str) -> int:
        return int(self._table_info(name)["rows"])

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Table `name` (or some of its `columns`) with exactly the schema it was written with (Parquet renames
        list items, for one; the schema in the manifest is cast back)."""
        schema = self._schema(name)
        table = pq.read_table(self.path / f"{name}.parquet", columns=columns)
        return table.cast(pa.schema([schema.field(column) for column in table.column_names]))

    def array(self, name: str, *, mmap: bool = False) -> np.ndarray:
        if name not in self.manifest["arrays"]:
            raise KeyError(f"array {name!r} is not in snapshot {self.version} (arrays: {self.arrays})")
        return np.load(self.path / f"{name}.npy", allow_pickle=False, mmap_mode="r" if mmap else None)

    def _db(self, name: str) -> tuple[lmdb.Environment, Any, pa.Schema]:
        self._table_info(name)
        with self._lock:
            if self._env is None:
                self._env = _ENVS.acquire(self.path / INDEX)
            if name not in self._dbs:
                self._dbs[name] = self._env.open_db(name.encode(), create=False)
            return self._env, self._dbs[name], self._schema(name)

    def _schema(self, name: str) -> pa.Schema:
        if name not in self._schemas:
            encoded = self._table_info(name)["schema"]
            self._schemas[name] = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))
        return self._schemas[name]

    def lookup(self, name: str, key: str) -> dict[str, Any] | None:
        """The row of table `name` whose key column is `key`, as a dict; None when there is no such row."""
        return self.lookup_many(name, [key])[0]

    def lookup_many(self, name: str, keys: Iterable[str]) -> list[dict[str, Any] | None]:
        """Rows for `keys` in order (None for each missing key), in one read transaction."""
        env, db, schema = self._db(name)
        out: list[dict[str, Any] | None] = []
        with env.begin(db=db, buffers=True) as txn:
            for key in keys:
                value = txn.get(key.encode("utf-8"))
                if value is None:
                    out.append(None)
                else:
                    out.append(pa.ipc.read_record_batch(pa.py_buffer(bytes(value)), schema).to_pylist()[0])
        return out

    def verify(self) -> None:
        """Re-hash every table and array against the manifest; raises SnapshotError on any difference."""
        for name, info in self.manifest["tables"].items():
            if _digest_table(self.table(name).combine_chunks(), info["key"]) != info["digest"]:
                raise SnapshotError(f"{self.path}: table {name!r} does not match its digest")
        for name, info in self.manifest["arrays"].items():
            if _digest_array(self.array(name)) != info["digest"]:
                raise SnapshotError(f"{self.path}: array {name!r} does not match its digest")

    def close(self) -> None:
        with self._lock:
            if self._env is not None:
                _ENVS.release(self.path / INDEX)
                self._env = None
                self._dbs.clear()
