import multiprocessing as mp
import os

import numpy as np
import pytest

from libs.encoders.cache import EmbeddingCache, cache_key, content_digest
from libs.encoders.segment import Segment, SegmentEncoder, SegmentEncoderConfig
from libs.encoders.testing import random_frames, tiny_frame_encoder, tiny_text_encoder
from libs.encoders.text import TextEncoderConfig


def test_round_trip_with_metadata_and_bools(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = cache_key("fp", "kind", content_digest("x"))
    assert cache.get(key) is None and key not in cache
    arrays = {"v": np.arange(6, dtype=np.float32).reshape(2, 3), "m": np.array([True, False])}
    cache.put(key, arrays, {"transcript": "héllo"})
    entry = cache.get(key)
    assert key in cache and len(cache) == 1
    np.testing.assert_array_equal(entry.arrays["v"], arrays["v"])
    assert entry.arrays["m"].dtype == np.bool_ and entry.metadata == {"transcript": "héllo"}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 1, 1)


def test_content_digest_sees_dtype_shape_and_order():
    a = np.zeros((2, 3), np.float32)
    assert content_digest(a) != content_digest(a.astype(np.float64))
    assert content_digest(a) != content_digest(a.reshape(3, 2))
    assert content_digest(["a", "b"]) != content_digest(["b", "a"])
    assert content_digest({"x": 1, "y": 2}) == content_digest({"y": 2, "x": 1})
    assert content_digest("ab", "c") != content_digest("a", "bc")


def test_torn_file_reads_as_a_miss_and_is_removed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = cache_key("fp", "k", "d")
    cache.put(key, {"v": np.ones(3, np.float32)})
    path = cache.path(key)
    path.write_bytes(path.read_bytes()[:20])
    assert cache.get(key) is None and not path.exists()


def test_text_cache_hits_skip_the_model(tmp_path):
    texts = ["hello world", "the cat", "hello world"]
    enc = tiny_text_encoder(cache=EmbeddingCache(tmp_path))
    first = enc.encode(texts)
    assert enc.forward_calls == 1 and enc.cache.stats.writes == 2  # the duplicate is computed once
    again = tiny_text_encoder(cache=EmbeddingCache(tmp_path))  # a new process would see the same files
    np.testing.assert_array_equal(again.encode(texts), first)
    assert again.forward_calls == 0
    again.encode(["hello world", "something new"])
    assert again.forward_calls == 1 and again.cache.stats.writes == 1
    tokens = again.encode_tokens(texts)
    assert again.forward_calls == 2  # token outputs are a separate kind
    again.encode_tokens(texts)
    assert again.forward_calls == 2
    np.testing.assert_allclose(tokens.pooled, first, atol=1e-6)


def test_changed_encoder_never_serves_stale_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path)
    base = tiny_text_encoder(cache=cache)
    base.encode(["hello"])
    for other in (
        tiny_text_encoder(seed=1, cache=cache),  # other weights
        tiny_text_encoder(config=TextEncoderConfig(pooling="cls"), cache=cache),
        tiny_text_encoder(config=TextEncoderConfig(max_tokens=16), cache=cache),
    ):
        assert other.fingerprint != base.fingerprint
        other.encode(["hello"])
        assert other.forward_calls == 1
    tuned = tiny_text_encoder(cache=cache)  # same name and config, weights changed in place
    tuned.model.encoder.layer[0].attention.self.query.weight.data.mul_(1.5)
    tuned.refresh_fingerprint()
    assert tuned.fingerprint != base.fingerprint
    assert not np.allclose(tuned.encode(["hello"]), base.encode(["hello"]))
    assert tuned.forward_calls == 1


def test_frame_and_segment_cache_hits_skip_the_models(tmp_path, video_path):
    cache = EmbeddingCache(tmp_path)
    frames = tiny_frame_encoder(cache=cache)
    x = random_frames(4)
    first = frames.encode(x)
    frames.encode(x)
    assert frames.forward_calls == 1
    text = tiny_text_encoder()
    seg = SegmentEncoder(
        text, frames, config=SegmentEncoderConfig(speech_tokens=8, comment_tokens=8), cache=cache
    )
    segments = [
        Segment(id="a", frames=x, comments=("wow",)),
        Segment(id="b", video=video_path, start=0.0, end=1.0, transcript="hello"),
    ]
    out = seg.encode_batch(segments)
    calls = (frames.forward_calls, text.forward_calls)
    renamed = [Segment(id="a2", frames=x, comments=("wow",)), segments[1]]  # same content, new id
    again = seg.encode_batch(renamed)
    assert (frames.forward_calls, text.forward_calls) == calls
    assert again[0].segment_id == "a2" and again[1].transcript == "hello"
    np.testing.assert_array_equal(again[0].x_v, out[0].x_v)
    np.testing.assert_allclose(out[0].x_v, first[[0, 2, 3]], atol=1e-6)  # uniform_frame_indices(4, 3)
    seg.encode(Segment(id="c", frames=x, comments=("wow", "new")))
    assert text.forward_calls == calls[1] + 1


def _writer(root: str, n_keys: int, seed: int, barrier) -> None:
    cache = EmbeddingCache(root)
    barrier.wait()
    for round_ in range(20):
        for k in range(n_keys):
            value = np.full(4096, k, np.float32)  # the content is a function of the key, as in real use
            cache.put(cache_key("fp", "v", str(k)), {"v": value}, {"k": str(k)})
            entry = cache.get(cache_key("fp", "v", str((k + seed + round_) % n_keys)))
            if entry is not None:
                expected = float((k + seed + round_) % n_keys)
                assert entry.arrays["v"].shape == (4096,) and (entry.arrays["v"] == expected).all()


def test_concurrent_writers_on_the_same_keys(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 5, seed, barrier)) for seed in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = EmbeddingCache(tmp_path)
    assert len(cache) == 5
    for k in range(5):
        entry = cache.get(cache_key("fp", "v", str(k)))
        assert entry.metadata == {"k": str(k)} and (entry.arrays["v"] == k).all()
    leftovers = [name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(".tmp")]
    assert leftovers == []


def test_bad_keys(tmp_path):
    with pytest.raises(ValueError, match="key"):
        EmbeddingCache(tmp_path).get("../../etc/passwd")
