"""Batch encoding of a JSONL manifest of segments into Parquet, resumable after a crash.

    kmono encode segments.jsonl --out embeddings.parquet --vision-model DIR [--asr-model DIR]

    run_encode_job("segments.jsonl", "embeddings.parquet", encoder, batch_size=16)
    emb = read_embeddings("embeddings.parquet")      # {"id": (N,), "visual_tokens": (N, k, D_v), ...}

**Manifest**: one JSON object per line (blank lines are skipped):

    {"id": "live42/0007", "video": "videos/live42.mp4", "start": 210.0, "end": 240.0,
     "comments": ["so cute", "where is this?"], "transcript": "optional ASR text"}
    {"id": "clip9", "frames": ["frames/clip9_0.jpg", "frames/clip9_1.jpg"], "audio": "audio/clip9.wav"}

Keys: `id` (required, unique), `frames` (image paths) or `video` (+ `start`/`end` seconds), `transcript`
or `audio` (an audio or video file), `comments` (strings in time order), and `meta` (anything, ignored).
Relative paths are relative to the manifest's directory. Other keys are an error (they are usually typos).

**Output**: one row per segment: `id`, the nine arrays of `SegmentEncoding` as fixed-size lists of float32
(masks: bool) with the shapes of `SegmentEncoder.dims`, and `transcript`. The schema metadata holds the
encoder's name, fingerprint and dims (`kmono.encoder.*`).

**Resuming**: each batch is written as its own Parquet file under `OUT.parts/` (temporary file + atomic
rename), so a crash loses at most the batch in flight. A new run skips every id already present in `OUT` or in
`OUT.parts/`, encodes the rest, then merges `OUT` and the parts into a new `OUT` (again by atomic rename),
dropping duplicate ids, and removes `OUT.parts/`. A run whose encoder fingerprint differs from the one that
wrote the existing output stops with `StaleOutputError` rather than mix vectors (`--overwrite` starts over).
One runner at a time per output: a second one fails fast on the lock file `OUT.lock`.

The per-batch function `encode_records` is the unit of work of both this local runner and the Spark runner
(`libs.encoders.spark`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from libs.encoders.errors import EncoderInputError, ManifestError, OutputLockedError, StaleOutputError
from libs.encoders.segment import ARRAY_FIELDS, Segment, SegmentDims, SegmentEncoder, SegmentEncoding

logger = logging.getLogger(__name__)

MANIFEST_KEYS = ("id", "frames", "video", "start", "end", "transcript", "audio", "comments", "meta")
META_NAME = b"kmono.encoder"
META_FINGERPRINT = b"kmono.encoder.fingerprint"
META_DIMS = b"kmono.encoder.dims"


# manifest


def parse_manifest_line(line: str, where: str) -> dict[str, Any] | None:
    """The record of one manifest line, None for a blank one; `ManifestError` naming `where` for a line that
    is not a JSON object."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(where, f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ManifestError(where, f"expected a JSON object, got {type(record).__name__}")
    return record


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each non-blank line; `ManifestError` for a line that is not a JSON object."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            record = parse_manifest_line(line, f"manifest line {number}")
            if record is not None:
                yield number, record


def count_manifest(path: str | os.PathLike[str]) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def record_to_segment(
    record: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
) -> Segment:
    """A manifest record as a `Segment` (paths resolved against `base_dir`); errors name the record's field."""
    unknown = sorted(set(record) - set(MANIFEST_KEYS))
    if unknown:
        raise ManifestError(
            unknown[0], f"unknown key (allowed: {', '.join(MANIFEST_KEYS)}; put extras under 'meta')"
        )
    base = Path(base_dir) if base_dir is not None else None

    def resolve(value: Any, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ManifestError(name, f"expected a file path, got {value!r}")
        p = Path(value).expanduser()
        return str(base / p if base is not None and not p.is_absolute() else p)

    frames = record.get("frames")
    if frames is not None:
        if not isinstance(frames, list):
            raise ManifestError("frames", f"expected a list of image paths, got {type(frames).__name__}")
        frames = [resolve(f, f"frames[{i}]") for i, f in enumerate(frames)]
    comments = record.get("comments")
    if comments is None:
        comments = []
    elif not isinstance(comments, list):
        raise ManifestError("comments", f"expected a list of strings, got {type(comments).__name__}")
    return Segment(
        id=record.get("id"),  # type: ignore[arg-type]  # Segment validates it
        frames=frames,
        video=resolve(record.get("video"), "video"),
        start=record.get("start"),
        end=record.get("end"),
        transcript=record.get("transcript"),
        audio=resolve(record.get("audio"), "audio"),
        comments=comments,
    )


# output schema and tables


def output_schema(dims: SegmentDims, *, name: str = "", fingerprint: str = "") -> pa.Schema:
    fields = [pa.field("id", pa.string(), nullable=False)]
    for column, shape in dims.shapes().items():
        arrow_type = pa.bool_() if column.endswith("_mask") else pa.float32()
        for n in reversed(shape):
            arrow_type = pa.list_(arrow_type, n)
        fields.append(pa.field(column, arrow_type, nullable=False))
    fields.append(pa.field("transcript", pa.string()))
    metadata = {
        META_NAME: name.encode(),
        META_FINGERPRINT: fingerprint.encode(),
        META_DIMS: json.dumps(dims.__dict__).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def _fixed_size(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """(N, *shape) numpy -> nested FixedSizeListArray of `arrow_type` without per-element Python work."""
    shape = values.shape[1:]
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=arrow_type)
    for n in reversed(shape):
        flat = pa.FixedSizeListArray.from_arrays(flat, n)
    return flat


def encodings_to_table(encodings: Sequence[SegmentEncoding], schema: pa.Schema) -> pa.Table:
    columns: list[pa.Array] = [pa.array([e.segment_id for e in encodings], pa.string())]
    for column in ARRAY_FIELDS:
        leaf = schema.field(column).type
        while pa.types.is_fixed_size_list(leaf):
            leaf = leaf.value_type
        if encodings:
            columns.append(_fixed_size(np.stack([getattr(e, column) for e in encodings]), leaf))
        else:
            columns.append(pa.array([], schema.field(column).type))
    columns.append(pa.array([e.transcript for e in encodings], pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass
class RecordFailure:
    id: str | None
    where: str
    error: str


@dataclass
class BatchResult:
    table: pa.Table
    failures: list[RecordFailure] = field(default_factory=list)


def encode_records(
    encoder: SegmentEncoder,
    records: Sequence[Mapping[str, Any]],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    on_error: str = "fail",
    wheres: Sequence[str] | None = None,
    schema: pa.Schema | None = None,
) -> BatchResult:
    """The per-batch unit of work: manifest records -> an Arrow table of their encodings.

    With `on_error="skip"`, records whose input is bad (`EncoderInputError`: undecodable video, empty segment,
    ...) are left out and reported in `failures`; with "fail" the first one raises, its message prefixed with
    the record's position (`wheres[i]`, e.g. "manifest line 12") and id.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error: expected 'fail' or 'skip', got {on_error!r}")
    wheres = list(wheres) if wheres is not None else [f"record {i}" for i in range(len(records))]
    schema = schema or output_schema(encoder.dims, name=encoder.name, fingerprint=encoder.fingerprint)
    segments: list[Segment] = []
    failures: list[RecordFailure] = []
    for record, where in zip(records, wheres, strict=True):
        try:
            segments.append(record_to_segment(record, base_dir=base_dir))
        except EncoderInputError as exc:
            _fail(on_error, failures, record, where, exc)
    try:
        encodings = encoder.encode_batch(segments)
    except EncoderInputError:
        # find the culprits one by one; the good ones are encoded (and cached) individually
        encodings = []
        by_id = {_record_id(r): w for r, w in zip(records, wheres, strict=True)}
        for seg in segments:
            try:
                encodings.append(encoder.encode(seg))
            except EncoderInputError as exc:
                _fail(on_error, failures, {"id": seg.id}, by_id.get(seg.id, "?"), exc)
    return BatchResult(encodings_to_table(encodings, schema), failures)


def _record_id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id")
    return value if isinstance(value, str) else None


def _fail(
    on_error: str,
    failures: list[RecordFailure],
    record: Mapping[str, Any],
    where: str,
    exc: EncoderInputError,
) -> None:
    rid = _record_id(record)
    label = f"{where}" + (f" (id {rid!r})" if rid else "")
    if on_error == "fail":
        raise type(exc)(f"{label}: {exc.field}", exc.reason) from exc
    logger.warning("skipping %s: %s", label, exc)
    failures.append(RecordFailure(rid, where, str(exc)))


# the local runner


@dataclass
class EncodeJobResult:
    out: Path
    total: int  # records in the manifest
    written: int  # encoded by this run
    skipped: int  # already in the output (resumed)
    failures: list[RecordFailure] = field(default_factory=list)


def parts_dir_of(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def run_encode_job(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    encoder: SegmentEncoder,
    *,
    batch_size: int = 16,
    resume: bool = True,
    overwrite: bool = False,
    on_error: str = "fail",
    progress: bool = True,
) -> EncodeJobResult:
    """Encode every segment of `manifest` into the Parquet file `out` (see the module docstring)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    manifest, out = Path(manifest), Path(out)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    parts = parts_dir_of(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _RunLock(out):
        if overwrite:
            out.unlink(missing_ok=True)
            shutil.rmtree(parts, ignore_errors=True)
        elif not resume and (out.exists() or parts.exists()):
            raise FileExistsError(f"{out} (or {parts}) exists; resume, or overwrite to start over")
        schema = output_schema(encoder.dims, name=encoder.name, fingerprint=encoder.fingerprint)
        done = _existing_ids(out, parts, encoder.fingerprint)
        parts.mkdir(exist_ok=True)
        total = count_manifest(manifest)
        result = EncodeJobResult(out=out, total=total, written=0, skipped=0)
        seen: dict[str, int] = {}
        batch: list[tuple[int, dict[str, Any]]] = []
        bar = tqdm(total=total, desc=f"encode {manifest.name}", unit="seg", disable=not progress)
        try:
            for number, record in iter_manifest(manifest):
                rid = record.get("id")
                if isinstance(rid, str):
                    if rid in seen:
                        raise ManifestError(
                            f"manifest line {number}: id", f"duplicate id {rid!r} (line {seen[rid]})"
                        )
                    seen[rid] = number
                    if rid in done:
                        result.skipped += 1
                        bar.update(1)
                        continue
                batch.append((number, record))
                if len(batch) >= batch_size:
                    _run_batch(encoder, batch, manifest.parent, on_error, schema, parts, result)
                    bar.update(len(batch))
                    batch = []
            if batch:
                _run_batch(encoder, batch, manifest.parent, on_error, schema, parts, result)
                bar.update(len(batch))
        finally:
            bar.close()
        _merge(out, parts, schema)
    logger.info(
        "encoded %d segments (%d already done, %d failed) into %s",
        result.written,
        result.skipped,
        len(result.failures),
        out,
    )
    return result


def _run_batch(
    encoder: SegmentEncoder,
    batch: list[tuple[int, dict[str, Any]]],
    base_dir: Path,
    on_error: str,
    schema: pa.Schema,
    parts: Path,
    result: EncodeJobResult,
) -> None:
    out = encode_records(
        encoder,
        [r for _, r in batch],
        base_dir=base_dir,
        on_error=on_error,
        wheres=[f"manifest line {n}" for n, _ in batch],
        schema=schema,
    )
    result.failures.extend(out.failures)
    if out.table.num_rows:
        _atomic_write_table(out.table, parts / f"part-{batch[0][0]:012d}-{uuid.uuid4().hex[:8]}.parquet")
    result.written += out.table.num_rows


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".parquet.tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def schema_fingerprint(schema: pa.Schema) -> str:
    """The fingerprint of the encoder that wrote an output with this schema ("" when it records none)."""
    return (schema.metadata or {}).get(META_FINGERPRINT, b"").decode()


def check_fingerprint(found: str, fingerprint: str, path: str | os.PathLike[str]) -> None:
    """`StaleOutputError` unless the output at `path`, written by encoder `found`, is this encoder's."""
    if found != fingerprint:
        raise StaleOutputError(
            f"{path} was written by another encoder (fingerprint {found[:12] or 'none'}, "
            f"this one is {fingerprint[:12]}); write to a new output or overwrite it"
        )


def _part_files(parts: Path) -> list[Path]:
    return sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []


def _existing_ids(out: Path, parts: Path, fingerprint: str) -> set[str]:
    done: set[str] = set()
    if parts.is_dir():
        for stale in parts.glob(".*.tmp"):  # a batch that was being written when the last run died
            stale.unlink(missing_ok=True)
    for path in ([out] if out.exists() else []) + _part_files(parts):
        pf = pq.ParquetFile(path)
        check_fingerprint(schema_fingerprint(pf.schema_arrow), fingerprint, path)
        done.update(pf.read(columns=["id"]).column("id").to_pylist())
    return done


def _merge(out: Path, parts: Path, schema: pa.Schema) -> None:
    """Fold `out` and the part files into a new `out` (atomic rename), dropping duplicate ids."""
    files = _part_files(parts)
    if not files and out.exists():
        shutil.rmtree(parts, ignore_errors=True)
        return
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    seen: set[str] = set()
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in ([out] if out.exists() else []) + files:
                pf = pq.ParquetFile(path)
                for i in range(pf.num_row_groups):
                    table = pf.read_row_group(i)
                    ids = table.column("id").to_pylist()
                    keep = [j for j, rid in enumerate(ids) if rid not in seen]
                    seen.update(ids)
                    if keep:
                        table = table if len(keep) == len(ids) else table.take(keep)
                        writer.write_table(table.cast(schema))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    shutil.rmtree(parts, ignore_errors=True)


class _RunLock:
    """An exclusive `flock` on OUT.lock: one runner per output at a time (released if the process dies).

    The lock file is left in place: removing it would let a runner that opened it before the removal and one
    that creates a new file both hold "the" lock.
    """

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(out.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> _RunLock:
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise OutputLockedError(f"another encode job is writing {self.path.with_suffix('')}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# reading


def read_embeddings(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """A written output (a file, or a directory of Parquet files as Spark writes it) as numpy arrays:
    `id` (N,) object, each array column stacked to (N, *shape), `transcript` (N,) object."""
    table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            out[name] = np.array(column.to_pylist(), dtype=object)
        else:
            out[name] = _list_column_to_numpy(column)
    return out


def _list_column_to_numpy(column: pa.Array) -> np.ndarray:
    n = len(column)
    shape: list[int] = []
    values = column
    while (
        pa.types.is_list(values.type)
        or pa.types.is_fixed_size_list(values.type)
        or pa.types.is_large_list(values.type)
    ):
        flat = values.flatten()
        rows = len(values)
        shape.append(len(flat) // rows if rows else 0)
        values = flat
    array = values.to_numpy(zero_copy_only=False)
    return array.reshape(n, *shape)
