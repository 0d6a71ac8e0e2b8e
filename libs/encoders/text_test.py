import json

import numpy as np
import pytest

from libs.encoders.errors import InputTooLongError, InputTypeError
from libs.encoders.testing import tiny_text_encoder
from libs.encoders.text import TextEncoder, TextEncoderConfig

TEXTS = ["hello world", "the cat sat on the mat", "", "a dog plays music at the live stream today"]


def test_tiny_shapes_and_normalisation(tiny_text):
    vecs = tiny_text.encode(TEXTS)
    assert vecs.shape == (4, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert tiny_text.encode([]).shape == (0, 32)


def test_deterministic_across_instances():
    a = tiny_text_encoder(seed=3).encode(TEXTS)
    b = tiny_text_encoder(seed=3).encode(TEXTS)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, tiny_text_encoder(seed=4).encode(TEXTS))


def test_batched_equals_one_by_one(tiny_text):
    batched = tiny_text.encode(TEXTS)
    single = np.stack([tiny_text.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    seqs = tiny_text.encode_tokens(TEXTS)
    for i, text in enumerate(TEXTS):
        one = tiny_text.encode_tokens([text])
        n = int(one.lengths[0])
        assert n == int(seqs.lengths[i])
        np.testing.assert_allclose(seqs.tokens[i, :n], one.tokens[0, :n], atol=1e-5)


def test_token_sequences_padding_and_pooling(tiny_text):
    seqs = tiny_text.encode_tokens(TEXTS, pad_to=128)
    assert seqs.tokens.shape == (4, 128, 32) and seqs.mask.shape == (4, 128)
    assert seqs.lengths.tolist() == tiny_text.count_tokens(TEXTS)
    assert not seqs.tokens[~seqs.mask].any()
    np.testing.assert_allclose(seqs.pooled, tiny_text.encode(TEXTS), atol=1e-6)


def test_truncation_on_cuts_and_off_raises_naming_the_text(tiny_text):
    long_text = "the cat " * 100  # 200 word tokens
    cut = tiny_text.encode_tokens(["hello", long_text], max_tokens=16, pad_to=16)
    assert cut.lengths.tolist() == [3, 16]
    with pytest.raises(InputTooLongError) as info:
        tiny_text.encode_tokens(["hello", long_text], max_tokens=16, truncate=False)
    assert info.value.field == "texts[1]" and "202 tokens" in str(info.value)
    strict = tiny_text_encoder(config=TextEncoderConfig(truncate=False, max_tokens=32))
    with pytest.raises(InputTooLongError, match=r"texts\[0\]"):
        strict.encode([long_text])
    with pytest.raises(ValueError, match="max_tokens"):
        tiny_text_encoder(config=TextEncoderConfig(max_tokens=1000))


def test_wrong_types_name_the_field(tiny_text):
    with pytest.raises(InputTypeError, match="texts: expected a sequence"):
        tiny_text.encode("one string")
    with pytest.raises(InputTypeError) as info:
        tiny_text.encode(["ok", 3])
    assert info.value.field == "texts[1]" and isinstance(info.value, ValueError)


def test_pooling_modes_differ(tiny_text):
    cls = tiny_text_encoder(config=TextEncoderConfig(pooling="cls")).encode(TEXTS[:2])
    mx = tiny_text_encoder(config=TextEncoderConfig(pooling="max", normalize=False)).encode(TEXTS[:2])
    assert not np.allclose(cls, tiny_text.encode(TEXTS[:2]))
    assert not np.allclose(np.linalg.norm(mx, axis=1), 1.0)


def test_from_pretrained_reads_sentence_transformers_files(tmp_path, tiny_text):
    tiny_text.model.save_pretrained(tmp_path)
    tiny_text.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24}))
    loaded = TextEncoder.from_pretrained(tmp_path)
    assert loaded.pooling == "cls" and loaded.max_tokens == 24 and loaded.name == tmp_path.name
    cls = tiny_text_encoder(config=TextEncoderConfig(pooling="cls"))
    np.testing.assert_allclose(loaded.encode(TEXTS), cls.encode(TEXTS), atol=1e-5)


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder.from_pretrained()


def test_minilm_paraphrases_are_closer_than_unrelated_sentences(minilm):
    vecs = minilm.encode(
        [
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The stock market fell sharply today.",
            "Share prices dropped a lot this afternoon.",
            "A cat is sleeping on the sofa.",
        ]
    )
    assert vecs.shape == (5, 384)
    sim = vecs @ vecs.T
    assert sim[0, 1] > 0.6 and sim[2, 3] > 0.5
    for unrelated in (sim[0, 2], sim[0, 4], sim[1, 3], sim[2, 4]):
        assert unrelated < 0.3
        assert unrelated < min(sim[0, 1], sim[2, 3]) - 0.3


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    from libs.encoders.text import default_text_model_dir

    texts = ["A man is playing a guitar.", "short", "word " * 400]
    reference = SentenceTransformer(str(default_text_model_dir()), device="cpu").encode(texts)
    assert minilm.max_tokens == 256 and minilm.pooling == "mean"
    np.testing.assert_allclose(minilm.encode(texts), reference, atol=1e-5)


def test_bfloat16_stays_close_to_float32(tiny_text):
    bf16 = tiny_text_encoder(config=TextEncoderConfig(dtype="bfloat16"))
    out = bf16.encode(TEXTS)
    assert out.dtype == np.float32
    cosine = (out * tiny_text.encode(TEXTS)).sum(axis=1)
    assert (cosine > 0.98).all()
