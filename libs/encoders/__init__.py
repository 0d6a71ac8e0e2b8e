"""The common multimodal encoder library: text, frames, speech and live-stream segments, cached.

One API over real models (transformers / sentence-transformers checkpoints by hub id or directory), tiny random
configs for tests (`libs.encoders.testing`), and a content-addressed cache:

    from libs.encoders import (TextEncoder, FrameEncoder, SpeechRecognizer, SegmentEncoder, Segment,
                               EmbeddingCache)

    cache = EmbeddingCache("~/.cache/kmono/encoders")
    text = TextEncoder.from_pretrained(cache=cache)               # bundled all-MiniLM-L6-v2, 384-d
    text.encode(["a cat on a mat"])                               # (1, 384) float32, L2-normalised
    text.encode_tokens(["..."], pad_to=64)                        # tokens (1, 64, 384), mask, pooled
    frames = FrameEncoder.from_pretrained("openai/clip-vit-base-patch32")   # or SigLIP
    frames.encode(video_frames)                                   # (T, 512); encode_tokens: (T, 50, 768)
    asr = SpeechRecognizer.from_pretrained("openai/whisper-small")          # optional
    seg = SegmentEncoder(text, frames, asr, cache=cache)
    seg.dims                                                      # fixed sizes to build models against
    out = seg.encode(Segment(id="s1", video="live.mp4", start=0, end=30, comments=("wow",)))
    out.x_v, out.x_s, out.x_t                                     # MMBee's visual, speech, comment sequences

Who uses what: MMBee takes X_v/X_s/X_t per segment, KuaiMM embeds knowledge, turns (`TextEncoder`) and frames
(`FrameEncoder`), RGCD-Rep builds item representations from the pooled vectors.

Batch jobs over a JSONL manifest of segments write Parquet and resume after a crash:

    kmono encode segments.jsonl --out embeddings.parquet --vision-model DIR [--asr-model DIR]

For corpora beyond one machine the same per-batch function (`encode_records`) runs on Apache Spark
(`libs.encoders.spark`; pyspark is an optional dependency, needs Java 17):

    kmono encode segments.jsonl --out emb_dir --engine spark --spark-master spark://HOST:7077 --vision-model DIR

or with spark-submit on a cluster (YARN / Kubernetes / standalone):

    zip -qr /tmp/kmono.zip libs && (cd proto && zip -qr /tmp/kmono.zip kmono)   # + the protos libs.media imports
    spark-submit --master yarn --deploy-mode cluster --py-files /tmp/kmono.zip \\
        --conf spark.executorEnv.HF_HUB_OFFLINE=1 \\
        libs/encoders/spark.py hdfs:///corpus/segments.jsonl --out hdfs:///corpus/embeddings \\
        --vision-model /models/clip-vit-b32 --asr-model /models/whisper-small --base-dir /mnt/corpus

(models and media on a file system every executor mounts; see `libs.encoders.spark`).

Errors about inputs are `EncoderInputError` (a `ValueError`) subclasses with the offending `field`.

The names below load on first use, so `import libs.encoders` (and the `kmono` CLI) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libs.encoders.cache import (
        EmbeddingCache,
        cache_key,
        content_digest,
    )
    from libs.encoders.errors import (
        DecodeError,
        EmptyInputError,
        EncoderInputError,
        InputTooLongError,
        InputTypeError,
        ManifestError,
        OutputLockedError,
        StaleOutputError,
        UnsupportedModelError,
    )
    from libs.encoders.frames import (
        FrameEncoder,
        FrameEncoderConfig,
        FrameEncoding,
        FramePreprocessor,
        uniform_frame_indices,
    )
    from libs.encoders.job import (
        EncodeJobResult,
        encode_records,
        read_embeddings,
        run_encode_job,
    )
    from libs.encoders.segment import (
        Segment,
        SegmentDims,
        SegmentEncoder,
        SegmentEncoderConfig,
        SegmentEncoding,
    )
    from libs.encoders.spec import (
        EncoderSpec,
        build_encoder,
    )
    from libs.encoders.speech import (
        SpeechConfig,
        SpeechRecognizer,
    )
    from libs.encoders.text import (
        TextEncoder,
        TextEncoderConfig,
        TokenSequences,
        default_text_model_dir,
    )
    from libs.encoders.video import (
        read_audio,
        sample_segment_frames,
    )

_EXPORTS = {
    "EmbeddingCache": "cache",
    "cache_key": "cache",
    "content_digest": "cache",
    "DecodeError": "errors",
    "EmptyInputError": "errors",
    "EncoderInputError": "errors",
    "InputTooLongError": "errors",
    "InputTypeError": "errors",
    "ManifestError": "errors",
    "OutputLockedError": "errors",
    "StaleOutputError": "errors",
    "UnsupportedModelError": "errors",
    "FrameEncoder": "frames",
    "FrameEncoderConfig": "frames",
    "FrameEncoding": "frames",
    "FramePreprocessor": "frames",
    "uniform_frame_indices": "frames",
    "EncodeJobResult": "job",
    "encode_records": "job",
    "read_embeddings": "job",
    "run_encode_job": "job",
    "Segment": "segment",
    "SegmentDims": "segment",
    "SegmentEncoder": "segment",
    "SegmentEncoderConfig": "segment",
    "SegmentEncoding": "segment",
    "EncoderSpec": "spec",
    "build_encoder": "spec",
    "SpeechConfig": "speech",
    "SpeechRecognizer": "speech",
    "TextEncoder": "text",
    "TextEncoderConfig": "text",
    "TokenSequences": "text",
    "default_text_model_dir": "text",
    "read_audio": "video",
    "sample_segment_frames": "video",
}

__all__ = [
    "DecodeError",
    "EmbeddingCache",
    "EmptyInputError",
    "EncodeJobResult",
    "EncoderInputError",
    "EncoderSpec",
    "FrameEncoder",
    "FrameEncoderConfig",
    "FrameEncoding",
    "FramePreprocessor",
    "InputTooLongError",
    "InputTypeError",
    "ManifestError",
    "OutputLockedError",
    "Segment",
    "SegmentDims",
    "SegmentEncoder",
    "SegmentEncoderConfig",
    "SegmentEncoding",
    "SpeechConfig",
    "SpeechRecognizer",
    "StaleOutputError",
    "TextEncoder",
    "TextEncoderConfig",
    "TokenSequences",
    "UnsupportedModelError",
    "build_encoder",
    "cache_key",
    "content_digest",
    "default_text_model_dir",
    "encode_records",
    "read_audio",
    "read_embeddings",
    "run_encode_job",
    "sample_segment_frames",
    "uniform_frame_indices",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'libs.encoders' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"libs.encoders.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
