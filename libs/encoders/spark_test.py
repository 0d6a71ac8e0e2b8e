"""The encode job under Spark in local mode (skipped without pyspark or Java)."""

import json
import shutil

import numpy as np
import pytest

from libs.encoders.job import read_embeddings, run_encode_job
from libs.encoders.spark import run_encode_job_spark, spark_available, spark_session
from libs.encoders.spec import EncoderSpec, build_encoder

pytestmark = [
    pytest.mark.skipif(
        not spark_available(), reason="pyspark is not installed (optional: pip install pyspark)"
    ),
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (java not on PATH)"),
]


def test_spark_local_mode_matches_the_local_job(tmp_path, video_path):
    records = [
        {"id": "a", "video": video_path, "start": 0.0, "end": 1.5, "comments": ["so cute"]},
        {"id": "b", "transcript": "hello world", "comments": ["wow", "nice"]},
        {"id": "c", "transcript": "the cat"},
        {"id": "d", "comments": ["where is this"]},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    spec = EncoderSpec(tiny=True)
    out = str(tmp_path / "spark_out")
    spark = spark_session("local[1]")
    try:
        first = run_encode_job_spark(spark, str(manifest), out, spec, batch_size=2)
        again = run_encode_job_spark(spark, str(manifest), out, spec, batch_size=2)  # resume: nothing to do
    finally:
        spark.stop()
    assert (first.written, first.skipped, again.written, again.skipped) == (4, 0, 0, 4)
    got = read_embeddings(out)
    run_encode_job(manifest, tmp_path / "local.parquet", build_encoder(spec), progress=False)
    want = read_embeddings(tmp_path / "local.parquet")
    order = np.argsort(got["id"])
    assert got["id"][order].tolist() == want["id"].tolist() == ["a", "b", "c", "d"]
    for name, value in want.items():
        if name in ("id", "transcript"):
            assert got[name][order].tolist() == value.tolist()
        else:
            assert got[name].shape == value.shape, name
            np.testing.assert_allclose(got[name][order], value, atol=1e-5, err_msg=name)
