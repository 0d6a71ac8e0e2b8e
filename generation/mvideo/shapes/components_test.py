import numpy as np
import torch

from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.shapes.components import PixelSpaceAutoencoder, build_text_encoder, build_tokenizer
from generation.mvideo.shapes.model import build_shapes_pipeline
from generation.mvideo.shapes.world import ShapesWorld
from generation.mvideo.training.config import SHAPES_TINY_SPEC


def test_pixel_space_autoencoder_is_exact_and_saves(tmp_path):
    x = torch.randn(2, 3, 4, 16, 16)
    for s in (1, 2):
        vae = PixelSpaceAutoencoder(spatial_compression_ratio=s)
        z = vae.encode(x).latent_dist.sample()
        assert z.shape == (2, 3 * s * s, 4, 16 // s, 16 // s)
        assert torch.equal(vae.decode(z).sample, x)
    vae.save_pretrained(tmp_path)
    assert PixelSpaceAutoencoder.from_pretrained(tmp_path).config.spatial_compression_ratio == 2


def test_tokenizer_and_text_encoder_tell_word_order_apart_and_take_any_padding():
    tokenizer = build_tokenizer(16)
    encoder = build_text_encoder(hidden_size=16, max_length=16).eval()
    ids = tokenizer(
        ["a red circle and a blue square", "a blue circle and a red square"],
        padding="max_length",
        max_length=226,  # the pipeline's default max_sequence_length
        truncation=True,
        return_tensors="pt",
    ).input_ids
    assert ids.shape == (2, 226) and (ids != tokenizer.unk_token_id).all()
    with torch.no_grad():
        out = encoder(ids)[0]
    assert out.shape == (2, 16, 16)  # cut to the encoder's positions
    assert not torch.allclose(out[0], out[1])  # same words, different order
    short = tokenizer(["a red circle, a blue square and a green triangle"], return_tensors="pt").input_ids
    # [CLS] a red circle , | a blue square and | a green triangle [SEP]
    assert encoder.phrase_index(short).tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]]


def test_shapes_pipeline_generates_and_round_trips(tmp_path):
    pipe = build_shapes_pipeline(SHAPES_TINY_SPEC)
    pipe.set_progress_bar_config(disable=True)
    sample = ShapesWorld(height=16, width=16, num_frames=4, max_objects=2).sample(0)
    masks = torch.from_numpy(sample.slot_masks(2)[None].astype(np.float32))
    kwargs = dict(num_inference_steps=2, guidance_scale=1.0, output_type="np", max_sequence_length=12)
    out = pipe(sample.caption, mask_video=masks, generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert out.shape == (1, 4, 16, 16, 3) and 0 <= out.min() and out.max() <= 1
    pipe.save_pretrained(tmp_path)
    loaded = MVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    again = loaded(
        sample.caption, mask_video=masks, generator=torch.Generator().manual_seed(0), **kwargs
    ).frames
    np.testing.assert_allclose(again, out, atol=1e-5)


def test_a_saved_shapes_pipeline_loads_in_a_fresh_process_with_from_pretrained(tmp_path):
    # diffusers loads only classes from imported modules: MVideoPipeline.from_pretrained imports ours first
    import subprocess
    import sys

    build_shapes_pipeline().save_pretrained(tmp_path)
    probe = (
        "import sys; from generation.mvideo.pipelines import MVideoPipeline; "
        f"pipe = MVideoPipeline.from_pretrained({str(tmp_path)!r}); print(type(pipe.vae).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "PixelSpaceAutoencoder"
