import dataclasses

import numpy as np
import pytest
from PIL import Image

from libs.encoders.errors import DecodeError, EmptyInputError, InputTooLongError, InputTypeError
from libs.encoders.segment import Segment, SegmentDims, SegmentEncoder, SegmentEncoderConfig
from libs.encoders.testing import random_frames

COMMENTS = ("so cute", "where is this", "wow")


def _check(out, dims: SegmentDims):
    assert out.matches(dims)
    for name, shape in dims.shapes().items():
        value = getattr(out, name)
        assert value.shape == shape, name
        assert value.dtype == (np.bool_ if name.endswith("_mask") else np.float32), name
    for tokens, mask in ((out.x_v, out.visual_mask), (out.x_s, out.speech_mask), (out.x_t, out.comment_mask)):
        assert not tokens[~mask].any()


def test_dims_and_shapes(tiny_segment):
    dims = tiny_segment.dims
    assert dims == SegmentDims(
        visual_len=3, visual_dim=24, speech_len=16, comment_len=16, text_dim=32, visual_pooled_dim=24
    )
    out = tiny_segment.encode(
        Segment(id="s1", frames=random_frames(7), transcript="hello world", comments=COMMENTS)
    )
    _check(out, dims)
    assert out.segment_id == "s1" and out.transcript == "hello world"
    assert out.visual_mask.all() and out.speech_mask.sum() == 4  # [CLS] hello world [SEP]
    assert out.comment_mask.sum() == 10  # [CLS] so cute [SEP] where is this [SEP] wow [SEP]
    np.testing.assert_allclose(np.linalg.norm(out.visual_pooled), 1.0, atol=1e-5)
    # X_v rows are the frame encoder's embeddings of the uniformly sampled frames 1, 3, 5
    frames = random_frames(7)
    np.testing.assert_allclose(out.x_v, tiny_segment.frames.encode(frames[[1, 3, 5]]), atol=1e-6)
    # X_t is the text encoder's token sequence of the joined comments
    joined = tiny_segment.text.encode_tokens(
        ["so cute [SEP] where is this [SEP] wow"], max_tokens=16, pad_to=16
    )
    np.testing.assert_allclose(out.x_t, joined.tokens[0], atol=1e-6)
    np.testing.assert_allclose(out.comment_pooled, joined.pooled[0], atol=1e-6)


def test_encoding_is_frozen_and_read_only(tiny_segment):
    out = tiny_segment.encode(Segment(id="s", transcript="hello"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.transcript = "x"
    with pytest.raises(ValueError, match="read-only"):
        out.x_s[0, 0] = 1.0


def test_missing_modalities_are_masked_zeros(tiny_segment):
    out = tiny_segment.encode(Segment(id="only-comments", comments=("hello",)))
    _check(out, tiny_segment.dims)
    assert not out.visual_mask.any() and not out.speech_mask.any() and out.comment_mask.any()
    assert not out.visual_pooled.any() and not out.speech_pooled.any()


def test_batch_equals_one_by_one_and_is_deterministic(tiny_segment, video_path):
    segments = [
        Segment(id="a", frames=random_frames(4, seed=1), comments=COMMENTS),
        Segment(id="b", video=video_path, start=0.5, end=2.5, transcript="the cat"),
        Segment(
            id="c",
            frames=[Image.fromarray(f) for f in random_frames(2, seed=2)],
            audio=np.zeros(8000, np.float32),
        ),
        Segment(id="d", transcript="hello world " * 20, comments=("nice",)),
    ]
    batch = tiny_segment.encode_batch(segments)
    again = tiny_segment.encode_batch(segments)
    for seg, out, out2 in zip(segments, batch, again, strict=True):
        single = tiny_segment.encode(seg)
        _check(out, tiny_segment.dims)
        assert out.segment_id == seg.id and single.transcript == out.transcript
        for name, value in out.arrays().items():
            np.testing.assert_allclose(value, getattr(single, name), atol=1e-5, err_msg=f"{seg.id}.{name}")
            np.testing.assert_array_equal(value, getattr(out2, name))
    assert batch[2].transcript  # transcribed by the tiny Whisper
    assert batch[3].speech_mask.all()  # truncated to L_s


def test_video_segment_uses_the_video_audio_when_there_is_a_recognizer(
    tiny_segment, video_path, silent_video_path
):
    out = tiny_segment.encode(Segment(id="v", video=video_path, start=1.0, end=2.0))
    assert out.visual_mask.all() and out.transcript and out.speech_mask.any()
    silent = tiny_segment.encode(Segment(id="s", video=silent_video_path))
    assert silent.visual_mask.all() and silent.transcript == "" and not silent.speech_mask.any()


def test_patch_tokens_mode(tiny_text, tiny_siglip):
    enc = SegmentEncoder(
        tiny_text,
        tiny_siglip,
        config=SegmentEncoderConfig(
            frames_per_segment=2, visual_tokens="patch", speech_tokens=8, comment_tokens=8
        ),
    )
    assert (enc.dims.visual_len, enc.dims.visual_dim, enc.dims.visual_pooled_dim) == (32, 32, 32)
    frames = random_frames(2)
    out = enc.encode(Segment(id="p", frames=frames))
    _check(out, enc.dims)
    np.testing.assert_allclose(out.x_v, tiny_siglip.encode_tokens(frames).tokens.reshape(32, 32), atol=1e-6)


def test_bad_segments_raise_value_errors_naming_the_field(tiny_segment, tiny_text, tiny_clip, tmp_path):
    with pytest.raises(EmptyInputError) as info:
        Segment(id="e")
    assert info.value.field == "segment" and isinstance(info.value, ValueError)
    with pytest.raises(EmptyInputError, match="frames: no frames"):
        Segment(id="e", frames=[])
    with pytest.raises(InputTypeError, match="id"):
        Segment(id="", transcript="x")
    with pytest.raises(InputTypeError, match=r"comments\[1\]"):
        Segment(id="x", comments=["ok", 5])
    with pytest.raises(InputTypeError, match="frames: give frames or a video"):
        Segment(id="x", frames=random_frames(1), video="v.mp4")
    with pytest.raises(InputTypeError) as info:
        tiny_segment.encode(Segment(id="x", frames=random_frames(2).astype(np.float64)))
    assert info.value.field == "frames[0]"
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"not a png")
    good = tmp_path / "good.png"
    Image.fromarray(random_frames(1)[0]).save(good)
    with pytest.raises(DecodeError) as info:
        tiny_segment.encode(Segment(id="x", frames=[str(good), str(corrupt)]))
    assert info.value.field == "frames[1]"
    with pytest.raises(DecodeError) as info:
        tiny_segment.encode_batch([Segment(id="ok", transcript="hi"), Segment(id="x", video=str(corrupt))])
    assert info.value.field == "segments[1].video"
    no_asr = SegmentEncoder(
        tiny_text, tiny_clip, config=SegmentEncoderConfig(speech_tokens=8, comment_tokens=8)
    )
    with pytest.raises(InputTypeError, match="audio: the segment carries audio but"):
        no_asr.encode(Segment(id="x", audio=np.zeros(100, np.float32)))
    strict = SegmentEncoder(
        tiny_text, tiny_clip, config=SegmentEncoderConfig(comment_tokens=8, truncate=False)
    )
    with pytest.raises(InputTooLongError) as info:
        strict.encode(Segment(id="x", comments=["hello world"] * 10))
    assert info.value.field == "comments"
    with pytest.raises(ValueError, match="speech_tokens"):
        SegmentEncoder(tiny_text, tiny_clip, config=SegmentEncoderConfig(speech_tokens=1000))
