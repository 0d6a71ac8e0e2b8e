"""`kmono encode MANIFEST.jsonl --out embeddings.parquet`: the batch encode job on the command line.

Registered through the `kmono.cli` entry-point group (`encode = "libs.encoders.cli:register"`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from libs.encoders.cache import default_cache_dir
from libs.encoders.errors import EncoderInputError, OutputLockedError, StaleOutputError

if TYPE_CHECKING:
    from libs.encoders.spec import EncoderSpec

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Encode the segments of a JSONL manifest (frames or video + time range, transcript or audio, comments) into
per-segment visual, speech and comment token sequences (X_v, X_s, X_t) and pooled vectors, written to
Parquet. Interrupted runs resume: ids already written are skipped, nothing is written twice.

manifest lines look like:
  {"id": "live42/0007", "video": "live42.mp4", "start": 210, "end": 240, "comments": ["so cute"]}
  {"id": "clip9", "frames": ["clip9_0.jpg", "clip9_1.jpg"], "transcript": "hello everyone"}

examples:
  kmono encode segments.jsonl --out emb.parquet --vision-model openai/clip-vit-base-patch32
  kmono encode segments.jsonl --out emb.parquet --vision-model ./siglip --asr-model ./whisper-small
  kmono encode segments.jsonl --out emb_dir --engine spark --spark-master 'local[4]' --vision-model ./clip
  kmono encode segments.jsonl --out /tmp/smoke.parquet --tiny        # random tiny models, smoke test only
"""


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and encoding options shared by `kmono encode` and `python -m libs.encoders.spark`."""
    models = parser.add_argument_group("models (hub ids or local directories)")
    models.add_argument("--text-model", default=None, help="text encoder (default: bundled all-MiniLM-L6-v2)")
    models.add_argument(
        "--vision-model", default=None, help="CLIP or SigLIP checkpoint (required unless --tiny)"
    )
    models.add_argument(
        "--asr-model", default=None, help="Whisper checkpoint for segments without transcripts"
    )
    models.add_argument("--language", default=None, help="Whisper language code, e.g. zh (default: detect)")
    models.add_argument(
        "--tiny", action="store_true", help="seeded random tiny models (tests and smoke runs)"
    )
    models.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default: cpu)")
    models.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    enc = parser.add_argument_group("encoding")
    enc.add_argument("--frames-per-segment", type=int, default=3, help="k frames per segment (default: 3)")
    enc.add_argument(
        "--visual-tokens",
        default="frame",
        choices=["frame", "patch"],
        help="X_v rows: one pooled vector per frame, or every patch token of every frame (default: frame)",
    )
    enc.add_argument("--speech-tokens", type=int, default=64, help="L_s, tokens of X_s (default: 64)")
    enc.add_argument("--comment-tokens", type=int, default=64, help="L_t, tokens of X_t (default: 64)")
    enc.add_argument(
        "--no-truncate", action="store_true", help="fail on texts over the limit instead of cutting"
    )
    enc.add_argument("--batch-size", type=int, default=16, help="segments per batch (default: 16)")
    enc.add_argument(
        "--on-error", default="fail", choices=["fail", "skip"], help="on a bad segment (default: fail)"
    )
    enc.add_argument("--cache-dir", default=None, help=f"encoder cache (default: {default_cache_dir()})")
    enc.add_argument("--no-cache", action="store_true", help="do not read or write the encoder cache")


def spec_from_args(args: argparse.Namespace) -> EncoderSpec:
    from libs.cli.main import UsageError
    from libs.encoders.segment import SegmentEncoderConfig
    from libs.encoders.spec import EncoderSpec

    if not args.tiny and not args.vision_model:
        raise UsageError("--vision-model is required (a CLIP or SigLIP hub id or directory), or --tiny")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        segment = SegmentEncoderConfig(
            frames_per_segment=args.frames_per_segment,
            visual_tokens=args.visual_tokens,
            speech_tokens=args.speech_tokens,
            comment_tokens=args.comment_tokens,
            truncate=not args.no_truncate,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EncoderSpec(
        text_model=args.text_model,
        vision_model=args.vision_model,
        asr_model=args.asr_model,
        tiny=args.tiny,
        segment=segment,
        language=args.language,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="encode a JSONL manifest of segments into Parquet embeddings",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, help="JSONL manifest, one segment per line")
    parser.add_argument(
        "--out", required=True, help="output Parquet file (with --engine spark: a directory of part files)"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--overwrite", action="store_true", help="discard an existing output and start over")
    run.add_argument("--no-resume", action="store_true", help="fail if the output exists instead of resuming")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--engine", default="local", choices=["local", "spark"], help="where to run (default: local)"
    )
    run.add_argument("--spark-master", default="local[*]", help="Spark master URL for --engine spark")
    run.add_argument("--num-partitions", type=int, default=None, help="Spark partitions (default: Spark's)")
    add_encoder_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from libs.cli.main import UsageError

    if not args.manifest.is_file():
        raise UsageError(f"manifest not found: {args.manifest}")
    spec = spec_from_args(args)
    if args.engine == "spark":
        return _run_spark(args, spec)
    from libs.encoders.job import run_encode_job
    from libs.encoders.spec import build_encoder

    try:
        encoder = build_encoder(spec)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the models: {exc}") from None
    try:
        result = run_encode_job(
            args.manifest,
            args.out,
            encoder,
            batch_size=args.batch_size,
            resume=not args.no_resume,
            overwrite=args.overwrite,
            on_error=args.on_error,
            progress=not args.no_progress,
        )
    except StaleOutputError as exc:
        raise UsageError(f"{exc} (--overwrite to start over)") from None
    except FileExistsError as exc:
        raise UsageError(str(exc).replace("overwrite", "--overwrite")) from None
    except EncoderInputError as exc:
        raise UsageError(f"{exc} (--on-error skip to leave such segments out)") from None
    except OutputLockedError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"{result.out}: {result.written} encoded, {result.skipped} already there, "
        f"{len(result.failures)} failed, {result.total} in the manifest",
        file=sys.stderr,
    )
    for failure in result.failures[:20]:
        print(f"  failed: {failure.where}: {failure.error}", file=sys.stderr)
    return 0


def _run_spark(args: argparse.Namespace, spec: EncoderSpec) -> int:
    from libs.cli.main import UsageError
    from libs.encoders.spark import run_encode_job_spark, spark_available, spark_session

    if not spark_available():
        raise UsageError("--engine spark needs pyspark (pip install pyspark) and a Java runtime")
    mode = "overwrite" if args.overwrite else ("error" if args.no_resume else "resume")
    spark = spark_session(args.spark_master)
    try:
        result = run_encode_job_spark(
            spark,
            str(args.manifest),
            args.out,
            spec,
            batch_size=args.batch_size,
            num_partitions=args.num_partitions,
            on_error=args.on_error,
            mode=mode,
        )
    except StaleOutputError as exc:
        raise UsageError(f"{exc} (--overwrite to start over)") from None
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    finally:
        spark.stop()
    print(
        f"{result.out}: {result.written} encoded, {result.skipped} already there, {len(result.failures)} failed",
        file=sys.stderr,
    )
    for failure in result.failures[:20]:
        print(f"  failed: {failure.where}: {failure.error}", file=sys.stderr)
    return 0
