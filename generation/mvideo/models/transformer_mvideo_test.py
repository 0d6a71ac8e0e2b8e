import ast
import hashlib
import importlib
import inspect
import re
import sys
import textwrap
import types

import diffusers
import pytest
import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel

from generation.mvideo.models import transformer_mvideo
from generation.mvideo.models.transformer_mvideo import MVideoTransformer3DModel, MVideoXFormersAttnProcessor
from generation.mvideo.pipelines.testing import randomize_mask_path, tiny_transformer

BASE_KWARGS = dict(
    num_attention_heads=4,
    attention_head_dim=8,
    in_channels=4,
    out_channels=4,
    time_embed_dim=2,
    text_embed_dim=32,
    num_layers=1,
    sample_width=8,
    sample_height=8,
    sample_frames=9,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=16,
)


def _inputs(frames=3, seed=0, mask_channels=4):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(2, frames, 4, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(2, 16, 32, generator=g),
        timestep=torch.tensor([10, 500]),
    ), torch.rand(2, frames, mask_channels, 8, 8, generator=g)


def _base(**overrides):
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**{**BASE_KWARGS, **overrides}).eval()


@pytest.mark.parametrize(
    "overrides",
    [{}, {"patch_size_t": 2, "use_rotary_positional_embeddings": True, "attention_head_dim": 16}],
    ids=["cogvideox-1.0", "cogvideox-1.5-patching"],
)
def test_from_cogvideox_reproduces_base_bit_exactly_with_and_without_mask(overrides):
    base = _base(**overrides)
    model = MVideoTransformer3DModel.from_cogvideox(base, mask_in_channels=4)
    inputs, mask = _inputs(frames=4 if overrides else 3)
    if overrides.get("use_rotary_positional_embeddings"):
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        inputs["image_rotary_emb"] = get_3d_rotary_pos_embed(
            embed_dim=16,
            crops_coords=None,
            grid_size=(4, 4),
            temporal_size=2,
            grid_type="slice",
            max_size=(4, 4),
        )
    with torch.no_grad():
        expected = base(**inputs).sample
        no_mask = model(**inputs).sample
        with_mask = model(**inputs, mask_latents=mask).sample
    assert torch.equal(no_mask, expected)
    assert torch.equal(with_mask, expected)
    assert model.config.mask_in_channels == 4
    assert torch.count_nonzero(model.mask_embed.weight) == 0
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra == model.mask_embed.weight.numel()


def test_trained_mask_path_changes_output_and_none_equals_zero_mask():
    model = tiny_transformer()
    randomize_mask_path(model)
    inputs, mask = _inputs()
    with torch.no_grad():
        none = model(**inputs).sample
        zeros = model(**inputs, mask_latents=torch.zeros_like(mask)).sample
        masked = model(**inputs, mask_latents=mask).sample
    assert torch.equal(none, zeros)
    assert not torch.allclose(none, masked, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    model = tiny_transformer()
    randomize_mask_path(model)
    model.save_pretrained(tmp_path)
    loaded = MVideoTransformer3DModel.from_pretrained(tmp_path).eval()
    assert loaded.config.mask_in_channels == model.config.mask_in_channels
    inputs, mask = _inputs()
    with torch.no_grad():
        assert torch.equal(
            model(**inputs, mask_latents=mask).sample, loaded(**inputs, mask_latents=mask).sample
        )


def test_from_cogvideox_path_then_save_load_keeps_zero_start(tmp_path):
    base = _base()
    base.save_pretrained(tmp_path / "base")
    model = MVideoTransformer3DModel.from_cogvideox(str(tmp_path / "base"), mask_in_channels=4)
    model.save_pretrained(tmp_path / "mvideo")
    loaded = MVideoTransformer3DModel.from_pretrained(tmp_path / "mvideo").eval()
    inputs, mask = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs, mask_latents=mask).sample, base(**inputs).sample)


def test_bad_mask_latents_raise():
    model = tiny_transformer()
    inputs, mask = _inputs()
    with pytest.raises(ValueError, match="mask_latents must have shape"):
        model(**inputs, mask_latents=mask[:, :2])
    no_mask_model = tiny_transformer(mask_in_channels=0)
    assert no_mask_model.mask_embed is None
    with pytest.raises(ValueError, match="mask_in_channels=0"):
        no_mask_model(**inputs, mask_latents=mask)


def test_gradients_reach_the_zero_mask_projection():
    model = tiny_transformer().train()
    inputs, mask = _inputs()
    model(**inputs, mask_latents=mask).sample.square().mean().backward()
    assert model.mask_embed.weight.grad.abs().sum() > 0


def test_xformers_processor_matches_sdpa(monkeypatch):
    """The xFormers processor keeps CogVideoX's maths (checked with SDPA standing in for xFormers' kernel)."""

    def fake_attention(q, k, v, op=None):  # xFormers layout (B, S, heads, d)
        return F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        ).transpose(1, 2)

    fake = types.ModuleType("xformers")
    fake.ops = types.SimpleNamespace(memory_efficient_attention=fake_attention)
    monkeypatch.setitem(sys.modules, "xformers", fake)
    monkeypatch.setitem(sys.modules, "xformers.ops", fake.ops)
    model = tiny_transformer()
    inputs, mask = _inputs()
    with torch.no_grad():
        expected = model(**inputs, mask_latents=mask).sample
        model.set_use_memory_efficient_attention_xformers(True)
        assert all(isinstance(p, MVideoXFormersAttnProcessor) for p in model.attn_processors.values())
        actual = model(**inputs, mask_latents=mask).sample
        model.set_use_memory_efficient_attention_xformers(False)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def forward_fingerprint(function) -> str:
    """sha256 of a function's code: its source parsed and unparsed without the docstring (formatting, comments and
    docstring changes do not count)."""
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    if ast.get_docstring(node) is not None:
        node.body = node.body[1:]
    return hashlib.sha256(ast.unparse(node).encode()).hexdigest()


def test_copied_forward_matches_the_installed_diffusers():
    """The '# Copied from' marker above MVideoTransformer3DModel.forward names diffusers' forward and version; its
    fingerprint must still be the one recorded, else our copy may have drifted from diffusers."""
    source = inspect.getsource(transformer_mvideo)
    marker = re.search(r"# Copied from (diffusers\.\S+)\.(\w+)\.(\w+) \(diffusers==([\w.]+)\)", source)
    assert marker, "the '# Copied from diffusers... (diffusers==X)' marker above forward is missing"
    module, cls, method, pinned = marker.groups()
    assert (cls, method) == ("CogVideoXTransformer3DModel", "forward")
    copied_from = getattr(getattr(importlib.import_module(module), cls), method)
    actual = forward_fingerprint(copied_from)
    recorded = MVideoTransformer3DModel._copied_forward_sha256
    assert actual == recorded, (
        f"diffusers {diffusers.__version__} changed {cls}.{method} since diffusers=={pinned}, which "
        "MVideoTransformer3DModel.forward (generation/mvideo/models/transformer_mvideo.py) copies. Diff the two "
        "versions of diffusers' forward (time/ofs embedding, patch embedding and text/video token split, the block "
        "loop with gradient checkpointing, norm_final/norm_out/proj_out, unpatchify), port what changed into our "
        "forward and rerun the bit-exactness tests here; then set the marker's version to "
        f"diffusers=={diffusers.__version__} and _copied_forward_sha256 to {actual!r}."
    )
    # the copy still takes everything the original takes, plus mask_latents
    ours = inspect.signature(MVideoTransformer3DModel.forward).parameters
    theirs = inspect.signature(copied_from).parameters
    assert list(ours) == [*list(theirs)[:4], "mask_latents", *list(theirs)[4:]]
