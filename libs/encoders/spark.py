"""The batch encode job on Apache Spark, for corpora beyond one machine (pyspark; no pandas, no JVM writer).

    spark = spark_session("yarn")          # or an existing SparkSession
    result = run_encode_job_spark(spark, "hdfs:///corpus/segments.jsonl", "hdfs:///corpus/embeddings",
                                  EncoderSpec(vision_model="/models/clip-vit-b32", asr_model="/models/whisper-small"))

How it runs: Spark reads the manifest's lines (`textFile`, any Hadoop file system) into partitions; each task
builds the encoder once per Python worker (`build_encoder`, memoised), parses its lines with the same code as
the local job, runs the same per-batch function (`libs.encoders.job.encode_records`) and writes its rows
with pyarrow to `OUT/part-<run>-<partition>.parquet` (a temporary name, then a rename), in the same schema as
the local job (fixed-size lists, encoder fingerprint in the metadata). `pyarrow.fs` reaches local paths,
HDFS, S3 and GCS. A retried task rewrites its own part file; nothing goes through Spark SQL, which keeps a
small job's start-up short. `read_embeddings(OUT)` reads the directory.

Modes: "resume" (default) skips ids already in OUT's parts (their ids are broadcast to the tasks; a part
written by another encoder fingerprint stops the job with `StaleOutputError`), "overwrite" deletes OUT's
parts first, "error" refuses an OUT that has parts.

Cluster invocation (code shipped as a zip; the manifest and OUT may be on HDFS/S3, but models and media are
opened by PyAV/PIL/transformers, so they must be on a file system every executor mounts at the same path,
e.g. NFS or a FUSE mount of the object store):

    cd /path/to/repo && zip -qr /tmp/kmono.zip libs && (cd proto && zip -qr /tmp/kmono.zip kmono)  # protos: make setup
    spark-submit --master yarn --deploy-mode cluster --py-files /tmp/kmono.zip \\
        --conf spark.executor.cores=4 --conf spark.task.cpus=4 \\
        --conf spark.executorEnv.HF_HUB_OFFLINE=1 \\
        libs/encoders/spark.py hdfs:///corpus/segments.jsonl --out hdfs:///corpus/embeddings \\
        --vision-model /models/clip-vit-b32 --asr-model /models/whisper-small \\
        --base-dir /mnt/corpus --num-partitions 512

The executors need the project's Python environment (torch, transformers, pyarrow, av; e.g. a packed venv
via `--archives`); `--base-dir` says where the manifest's relative media paths start. On GPU executors add
`--conf spark.executor.resource.gpu.amount=1 --conf spark.task.resource.gpu.amount=1 --device cuda`.
From a client machine, `kmono encode MANIFEST --out DIR --engine spark --spark-master URL ...` does the same.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from libs.encoders.errors import StaleOutputError
from libs.encoders.job import (
    RecordFailure,
    check_fingerprint,
    encode_records,
    output_schema,
    parse_manifest_line,
    schema_fingerprint,
)
from libs.encoders.spec import EncoderSpec, build_encoder

logger = logging.getLogger(__name__)

MODES = ("resume", "overwrite", "error")


def spark_available() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SparkJobResult:
    out: str
    written: int = 0
    skipped: int = 0
    failures: list[RecordFailure] = field(default_factory=list)


def _filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def _part_paths(fs: Any, root: str) -> list[str]:
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return []
    entries = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(
        e.path
        for e in entries
        if e.type == pafs.FileType.File
        and e.base_name.startswith("part-")
        and e.base_name.endswith(".parquet")
    )


def encode_partition(
    index: int,
    lines: Iterable[str],
    *,
    spec: EncoderSpec,
    out: str,
    run_id: str,
    base_dir: str | None,
    batch_size: int,
    on_error: str,
    done_ids: Any = None,
    expected_fingerprint: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Spark partition function: manifest lines -> one Parquet part file; yields one stats dict."""
    encoder = build_encoder(spec)
    if expected_fingerprint:
        check_fingerprint(expected_fingerprint, encoder.fingerprint, out)
    done = done_ids.value if done_ids is not None else frozenset()
    schema = output_schema(encoder.dims, name=encoder.name, fingerprint=encoder.fingerprint)
    fs, root = _filesystem(out)
    name = f"part-{run_id}-{index:05d}.parquet"
    tmp = f"{root}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    stats: dict[str, Any] = {"written": 0, "skipped": 0, "failures": []}
    writer = None
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer
        result = encode_records(
            encoder,
            batch,
            base_dir=base_dir,
            on_error=on_error,
            wheres=[f"partition {index}"] * len(batch),
            schema=schema,
        )
        stats["failures"].extend((f.id, f.where, f.error) for f in result.failures)
        if result.table.num_rows:
            if writer is None:
                writer = pq.ParquetWriter(fs.open_output_stream(tmp), schema)
            writer.write_table(result.table)
            stats["written"] += result.table.num_rows

    try:
        for line in lines:
            record = parse_manifest_line(line, f"partition {index}: a manifest line")
            if record is None:
                continue
            if record.get("id") in done:
                stats["skipped"] += 1
                continue
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
                batch = []
        if batch:
            flush()
        if writer is not None:
            writer.close()
            fs.move(tmp, f"{root}/{name}")
    except BaseException:
        if writer is not None:
            writer.close()
            fs.delete_file(tmp)
        raise
    yield stats


def run_encode_job_spark(
    spark: Any,
    manifest: str,
    out: str,
    spec: EncoderSpec,
    *,
    batch_size: int = 16,
    num_partitions: int | None = None,
    on_error: str = "fail",
    mode: str = "resume",
    base_dir: str | None = None,
) -> SparkJobResult:
    """Encode `manifest` into the Parquet directory `out` with Spark (see the module docstring). Relative media
    paths are resolved against `base_dir` (default: the manifest's directory when it is a local path)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    local_manifest = "://" not in manifest
    if local_manifest:
        manifest = str(Path(manifest).expanduser().resolve())
        if base_dir is None:
            base_dir = str(Path(manifest).parent)
    fs, root = _filesystem(out)
    existing = _part_paths(fs, root)
    done: set[str] = set()
    fingerprint = None
    if existing and mode == "error":
        raise FileExistsError(f"{out} already holds {len(existing)} part files; resume or overwrite")
    if existing and mode == "overwrite":
        for path in existing:
            fs.delete_file(path)
        existing = []
    for path in existing:
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            found = schema_fingerprint(pf.schema_arrow)
            if fingerprint is not None and found != fingerprint:
                raise StaleOutputError(
                    f"{out} mixes parts of two encoders ({fingerprint[:12]}, {found[:12]})"
                )
            fingerprint = found
            done.update(pf.read(columns=["id"]).column("id").to_pylist())
    fs.create_dir(root, recursive=True)
    sc = spark.sparkContext
    lines = sc.textFile(("file://" if local_manifest else "") + manifest, minPartitions=num_partitions)
    if num_partitions and lines.getNumPartitions() != num_partitions:
        lines = lines.repartition(num_partitions)
    fn = functools.partial(
        encode_partition,
        spec=spec,
        out=out if "://" in out else str(Path(out).expanduser().resolve()),
        run_id=uuid.uuid4().hex[:8],
        base_dir=base_dir,
        batch_size=batch_size,
        on_error=on_error,
        done_ids=sc.broadcast(frozenset(done)) if done else None,
        expected_fingerprint=fingerprint,
    )
    result = SparkJobResult(out=out)
    for stats in lines.mapPartitionsWithIndex(fn).collect():
        result.written += stats["written"]
        result.skipped += stats["skipped"]
        result.failures.extend(RecordFailure(*f) for f in stats["failures"])
    logger.info("spark: encoded %d segments (%d already done) into %s", result.written, result.skipped, out)
    return result


def spark_session(master: str = "local[1]", app_name: str = "kmono-encode") -> Any:
    """A SparkSession on `master`. A local one runs its Python workers on this interpreter (same packages) and
    its JVM with the C1 compiler only and the serial GC: the JVM only schedules tasks here, and on a small
    shared machine this halves its start-up."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name).config("spark.ui.enabled", "false")
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> int:
    """`spark-submit libs/encoders/spark.py MANIFEST --out DIR ...` (see the module docstring)."""
    import argparse

    from libs.encoders.cli import add_encoder_arguments, spec_from_args

    parser = argparse.ArgumentParser(
        prog="libs/encoders/spark.py", description="Encode a manifest with Spark."
    )
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-partitions", type=int, default=None)
    parser.add_argument("--mode", default="resume", choices=MODES)
    parser.add_argument("--base-dir", default=None, help="resolve relative media paths against this")
    add_encoder_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("kmono-encode").getOrCreate()
    try:
        result = run_encode_job_spark(
            spark,
            args.manifest,
            args.out,
            spec_from_args(args),
            batch_size=args.batch_size,
            num_partitions=args.num_partitions,
            on_error=args.on_error,
            mode=args.mode,
            base_dir=args.base_dir,
        )
    finally:
        spark.stop()
    logger.info("%d written, %d skipped, %d failed", result.written, result.skipped, len(result.failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
