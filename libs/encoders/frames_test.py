import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from libs.encoders.errors import DecodeError, EmptyInputError, InputTypeError, UnsupportedModelError
from libs.encoders.frames import FrameEncoder, FramePreprocessor, uniform_frame_indices
from libs.encoders.testing import random_frames, tiny_frame_encoder


@pytest.mark.parametrize(("kind", "dim", "tokens"), [("clip", 24, 17), ("siglip", 32, 16)])
def test_tiny_shapes(kind, dim, tokens, request):
    enc = request.getfixturevalue(f"tiny_{kind}")
    frames = random_frames(5)
    assert (enc.embedding_dim, enc.num_tokens, enc.token_dim) == (dim, tokens, 32)
    pooled = enc.encode(frames)
    assert pooled.shape == (5, dim) and pooled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    out = enc.encode_tokens(frames)
    assert out.tokens.shape == (5, tokens, 32)
    np.testing.assert_allclose(out.pooled, pooled, atol=1e-6)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_deterministic_and_batching_equals_one_by_one(kind):
    frames = random_frames(5, seed=1)
    a = tiny_frame_encoder(kind, seed=2)
    b = tiny_frame_encoder(kind, seed=2)
    b.config = type(b.config)(batch_size=2)
    batched = a.encode_tokens(frames)
    np.testing.assert_array_equal(batched.pooled, tiny_frame_encoder(kind, seed=2).encode(frames))
    np.testing.assert_allclose(b.encode(frames), batched.pooled, atol=1e-5)
    single = [a.encode_tokens(f) for f in frames]
    np.testing.assert_allclose(np.concatenate([s.pooled for s in single]), batched.pooled, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([s.tokens for s in single]), batched.tokens, atol=1e-5)


def test_preprocessing_matches_transformers_pil_processors():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    frames = [random_frames(1, 61, 90, seed=3)[0], random_frames(1, 100, 40, seed=4)[0]]
    clip_ref = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ours = FramePreprocessor.for_model("clip", 32, clip_ref.to_dict())
    expected = clip_ref(images=frames, return_tensors="pt").pixel_values
    torch.testing.assert_close(ours(frames), expected, atol=1e-5, rtol=0)
    siglip_ref = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ours = FramePreprocessor.for_model("siglip", 32, siglip_ref.to_dict())
    torch.testing.assert_close(
        ours(frames), siglip_ref(images=frames, return_tensors="pt").pixel_values, atol=1e-5, rtol=0
    )


def test_uniform_frame_indices():
    assert uniform_frame_indices(90, 3) == [15, 45, 75]
    assert uniform_frame_indices(3, 3) == [0, 1, 2]
    assert uniform_frame_indices(2, 3) == [0, 1, 1]
    assert uniform_frame_indices(1, 4) == [0, 0, 0, 0]
    with pytest.raises(EmptyInputError):
        uniform_frame_indices(0, 3)


def test_accepts_pil_images_and_paths(tiny_clip, tmp_path):
    frames = random_frames(2, seed=5)
    path = tmp_path / "f.png"
    Image.fromarray(frames[1]).save(path)
    mixed = tiny_clip.encode([Image.fromarray(frames[0]), str(path)])
    np.testing.assert_allclose(mixed, tiny_clip.encode(frames), atol=1e-6)


def test_bad_frames_name_the_field(tiny_clip, tmp_path):
    frames = random_frames(3)
    with pytest.raises(InputTypeError) as info:
        tiny_clip.encode(frames.astype(np.float32) / 255)
    assert info.value.field == "frames[0]" and "uint8" in str(info.value)
    with pytest.raises(InputTypeError, match=r"frames\[1\]: expected shape"):
        tiny_clip.encode([frames[0], frames[1][:, :, :2]])
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DecodeError) as info:
        tiny_clip.encode([frames[0], str(corrupt)])
    assert info.value.field == "frames[1]" and isinstance(info.value, ValueError)
    with pytest.raises(DecodeError, match="no such image"):
        tiny_clip.encode([str(tmp_path / "missing.png")])


def _save_tiny_full_model(kind, path):
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    from libs.encoders.testing import tiny_vision_config

    text = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4}
    torch.manual_seed(0)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(vision_config=tiny_vision_config(), text_config=text, projection_dim=24))
    else:
        model = SiglipModel(SiglipConfig(vision_config=tiny_vision_config(), text_config=text))
    model.save_pretrained(path)
    return model


def test_from_pretrained_full_clip_checkpoint_with_preprocessor_config(tmp_path):
    model = _save_tiny_full_model("clip", tmp_path)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.5, 0.5]
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": mean, "image_std": std, "size": {"shortest_edge": 32}, "crop_size": 32})
    )
    enc = FrameEncoder.from_pretrained(tmp_path)
    assert enc.family == "clip" and enc.embedding_dim == 24 and enc.preprocessor.mean == tuple(mean)
    frames = random_frames(2)
    pixels = enc.preprocessor(list(frames))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(
            model.get_image_features(pixel_values=pixels).pooler_output, dim=-1
        )
    np.testing.assert_allclose(enc.encode(frames), expected.numpy(), atol=1e-5)


def test_from_pretrained_full_siglip_checkpoint(tmp_path):
    model = _save_tiny_full_model("siglip", tmp_path)
    enc = FrameEncoder.from_pretrained(tmp_path)
    assert (
        enc.family == "siglip"
        and enc.preprocessor.mean == (0.5, 0.5, 0.5)
        and enc.preprocessor.size == (32, 32)
    )
    frames = random_frames(2)
    with torch.no_grad():
        expected = model.vision_model(pixel_values=enc.preprocessor(list(frames))).pooler_output
    np.testing.assert_allclose(
        enc.encode(frames), torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-5
    )


def test_unsupported_checkpoint(tmp_path, tiny_text):
    tiny_text.model.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="not a CLIP or SigLIP"):
        FrameEncoder.from_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError):
        FrameEncoder(tiny_text.model)


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 5000), k=st.integers(1, 64))
def test_uniform_frame_indices_properties(num_frames, k):
    idx = uniform_frame_indices(num_frames, k)
    assert len(idx) == k and idx == sorted(idx)
    assert 0 <= idx[0] and idx[-1] < num_frames
    if num_frames >= k:
        assert len(set(idx)) == k  # distinct frames whenever there are enough
    centres = [(i + 0.5) * num_frames / k for i in range(k)]  # of k equal parts of the clip, in frame units
    assert all(
        abs(j + 0.5 - c) <= 0.5 + 1e-9 for j, c in zip(idx, centres, strict=True)
    )  # the frame shown there
