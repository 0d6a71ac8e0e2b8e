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

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "cache": ["EmbeddingCache", "cache_key", "content_digest"],
        "errors": [
            "DecodeError",
            "EmptyInputError",
            "EncoderInputError",
            "InputTooLongError",
            "InputTypeError",
            "ManifestError",
            "OutputLockedError",
            "StaleOutputError",
            "UnsupportedModelError",
        ],
        "frames": [
            "FrameEncoder",
            "FrameEncoderConfig",
            "FrameEncoding",
            "FramePreprocessor",
            "uniform_frame_indices",
        ],
        "job": ["EncodeJobResult", "encode_records", "read_embeddings", "run_encode_job"],
        "segment": ["Segment", "SegmentDims", "SegmentEncoder", "SegmentEncoderConfig", "SegmentEncoding"],
        "spec": ["EncoderSpec", "build_encoder"],
        "speech": ["SpeechConfig", "SpeechRecognizer"],
        "text": ["TextEncoder", "TextEncoderConfig", "TokenSequences", "default_text_model_dir"],
        "video": ["read_audio", "sample_segment_frames"],
    },
)
