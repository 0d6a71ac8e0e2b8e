import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from libs.encoders.errors import DecodeError, ManifestError, OutputLockedError, StaleOutputError
from libs.encoders.job import (
    _RunLock,
    encode_records,
    parts_dir_of,
    read_embeddings,
    record_to_segment,
    run_encode_job,
)
from libs.encoders.segment import SegmentEncoder, SegmentEncoderConfig
from libs.encoders.testing import random_frames, tiny_text_encoder


def write_manifest(tmp_path, video_path, n=10):
    images = []
    for i, frame in enumerate(random_frames(2, seed=7)):
        images.append(f"img{i}.png")
        Image.fromarray(frame).save(tmp_path / images[-1])
    records = []
    for i in range(n):
        record = {"id": f"seg{i:02d}", "comments": ["so cute", f"wow {i}"]}
        if i % 3 == 0:
            record |= {"video": video_path, "start": 0.1 * i, "end": 0.1 * i + 1.0}
        elif i % 3 == 1:
            record |= {"frames": images, "transcript": f"hello world {i}"}
        else:
            record |= {"transcript": "the cat sat", "meta": {"author": i}}
        records.append(record)
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return path, records


class CrashingEncoder:
    """Wraps a SegmentEncoder and raises on the n-th batch, as a killed process would stop."""

    def __init__(self, inner, crash_on_batch):
        self.inner, self.crash_on_batch, self.batches, self.encoded = inner, crash_on_batch, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_batch(self, segments):
        self.batches += 1
        if self.batches == self.crash_on_batch:
            raise KeyboardInterrupt("simulated crash")
        self.encoded += len(segments)
        return self.inner.encode_batch(segments)


@pytest.fixture
def encoder(tiny_text, tiny_clip):
    return SegmentEncoder(
        tiny_text, tiny_clip, config=SegmentEncoderConfig(speech_tokens=8, comment_tokens=8)
    )


def test_job_writes_fixed_size_columns_equal_to_direct_encoding(tmp_path, video_path, encoder):
    manifest, records = write_manifest(tmp_path, video_path, n=6)
    out = tmp_path / "emb.parquet"
    result = run_encode_job(manifest, out, encoder, batch_size=4, progress=False)
    assert (result.total, result.written, result.skipped, result.failures) == (6, 6, 0, [])
    assert not parts_dir_of(out).exists()
    schema = pq.read_schema(out)
    assert schema.field("visual_tokens").type.list_size == 3
    assert schema.field("speech_tokens").type.list_size == 8
    assert schema.field("speech_tokens").type.value_type.list_size == 32
    assert schema.metadata[b"kmono.encoder.fingerprint"].decode() == encoder.fingerprint
    emb = read_embeddings(out)
    assert emb["id"].tolist() == [r["id"] for r in records]
    assert emb["visual_tokens"].shape == (6, 3, 24) and emb["comment_mask"].dtype == np.bool_
    for i, record in enumerate(records):
        direct = encoder.encode(record_to_segment(record, base_dir=tmp_path))
        for name, value in direct.arrays().items():
            np.testing.assert_allclose(emb[name][i], value, atol=1e-5, err_msg=name)
        assert emb["transcript"][i] == direct.transcript


def test_resumes_after_a_crash_without_duplicates(tmp_path, video_path, encoder):
    manifest, records = write_manifest(tmp_path, video_path, n=10)
    out = tmp_path / "emb.parquet"
    crashing = CrashingEncoder(encoder, crash_on_batch=3)
    with pytest.raises(KeyboardInterrupt):
        run_encode_job(manifest, out, crashing, batch_size=3, progress=False)
    assert not out.exists() and len(list(parts_dir_of(out).glob("part-*.parquet"))) == 2
    (parts_dir_of(out) / ".torn.parquet.tmp").write_bytes(b"half a file")  # a write cut short
    resumed = CrashingEncoder(encoder, crash_on_batch=0)
    result = run_encode_job(manifest, out, resumed, batch_size=3, progress=False)
    assert (result.written, result.skipped) == (4, 6) and resumed.encoded == 4
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == [r["id"] for r in records] and len(set(ids)) == 10
    assert not parts_dir_of(out).exists()
    # a crash after the merge but before the parts were removed: the next run deduplicates
    parts = parts_dir_of(out)
    parts.mkdir()
    pq.write_table(pq.read_table(out).slice(0, 2), parts / "part-000000000001-aaaaaaaa.parquet")
    again = CrashingEncoder(encoder, crash_on_batch=0)
    result = run_encode_job(manifest, out, again, batch_size=3, progress=False)
    assert (result.written, result.skipped, again.encoded) == (0, 10, 0)
    assert sorted(pq.read_table(out, columns=["id"]).column("id").to_pylist()) == sorted(ids)


def test_a_changed_encoder_does_not_append_to_old_output(tmp_path, video_path, encoder, tiny_clip):
    manifest, _ = write_manifest(tmp_path, video_path, n=3)
    out = tmp_path / "emb.parquet"
    run_encode_job(manifest, out, encoder, progress=False)
    other = SegmentEncoder(
        tiny_text_encoder(seed=5), tiny_clip, config=SegmentEncoderConfig(speech_tokens=8, comment_tokens=8)
    )
    with pytest.raises(StaleOutputError, match="another encoder"):
        run_encode_job(manifest, out, other, progress=False)
    with pytest.raises(FileExistsError):
        run_encode_job(manifest, out, encoder, resume=False, progress=False)
    assert run_encode_job(manifest, out, other, overwrite=True, progress=False).written == 3


def test_a_second_runner_on_the_same_output_fails_fast(tmp_path, video_path, encoder):
    manifest, _ = write_manifest(tmp_path, video_path, n=2)
    out = tmp_path / "emb.parquet"
    with _RunLock(out), pytest.raises(OutputLockedError, match="another encode job is writing"):
        run_encode_job(manifest, out, encoder, progress=False)
    assert not out.exists()
    assert run_encode_job(manifest, out, encoder, progress=False).written == 2  # the lock was released


def test_bad_records(tmp_path, video_path, encoder):
    manifest, records = write_manifest(tmp_path, video_path, n=3)
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    bad = [*records, {"id": "broken", "video": "bad.mp4"}, {"id": "empty"}]
    result = encode_records(
        encoder, bad, base_dir=tmp_path, on_error="skip", wheres=[f"line {i + 1}" for i in range(5)]
    )
    assert result.table.column("id").to_pylist() == ["seg00", "seg01", "seg02"]
    assert [(f.id, f.where) for f in result.failures] == [("empty", "line 5"), ("broken", "line 4")]
    with pytest.raises(DecodeError) as info:
        encode_records(
            encoder, bad[:4], base_dir=tmp_path, wheres=[f"manifest line {i + 1}" for i in range(4)]
        )
    assert info.value.field == "manifest line 4 (id 'broken'): video"
    with pytest.raises(ManifestError, match="commments: unknown key"):
        record_to_segment({"id": "x", "commments": ["typo"]})
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "transcript": "x"}\n{"id": "a", "transcript": "y"}\n')
    with pytest.raises(ManifestError, match="line 2: id: duplicate id 'a' \\(line 1\\)"):
        run_encode_job(dup, tmp_path / "dup.parquet", encoder, progress=False)
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"id": "a", "transcript": "x"}\nnot json\n')
    with pytest.raises(ManifestError, match="manifest line 2: not valid JSON"):
        run_encode_job(junk, tmp_path / "junk.parquet", encoder, progress=False)
