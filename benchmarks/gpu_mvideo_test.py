"""gpu_mvideo on CPU: the analytic FLOP count is the counter's, the plain baseline shares the MVideo weights, the
published sizes are the published models', and the CPU run says it is scaled down and writes its JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import gpu_mvideo
from generation.mvideo.models import MVideoTransformer3DModel
from generation.mvideo.pipelines.pipeline_mvideo import rotary_embeddings


@pytest.mark.parametrize("key", ["2b", "5b"])
@pytest.mark.parametrize("mask", [False, True])
def test_transformer_flops_equal_flop_counter(key, mask):
    config = gpu_mvideo.model_config(key, gpu_mvideo.CPU_SHAPE, scaled_down=True)
    _, frames, height, width = gpu_mvideo.latent_grid(config, gpu_mvideo.CPU_SHAPE)
    torch.manual_seed(0)
    model = MVideoTransformer3DModel(**config).eval()
    batch, text_tokens = 3, config["max_text_seq_length"]  # sin-cos positions are built for all 226
    inputs = dict(
        hidden_states=torch.randn(batch, frames, config["in_channels"], height, width),
        encoder_hidden_states=torch.randn(batch, text_tokens, config["text_embed_dim"]),
        timestep=torch.full((batch,), 10),
        image_rotary_emb=rotary_embeddings(model.config, frames, height, width, torch.device("cpu")),
        return_dict=False,
    )
    if mask:
        inputs["mask_latents"] = torch.randn(batch, frames, model.config.mask_in_channels, height, width)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(**inputs)
    expected = gpu_mvideo.transformer_flops(config, batch, frames, height, width, text_tokens, mask=mask)
    assert counter.get_total_flops() == expected


def test_plain_transformer_shares_the_mvideo_weights():
    config = gpu_mvideo.model_config("2b", gpu_mvideo.CPU_SHAPE, scaled_down=True)
    mvideo = MVideoTransformer3DModel(**config)
    plain = gpu_mvideo.plain_transformer(mvideo)
    assert type(plain).__name__ == "CogVideoXTransformer3DModel"
    ours = {name: p.data_ptr() for name, p in mvideo.named_parameters() if not name.startswith("mask_embed.")}
    assert {name: p.data_ptr() for name, p in plain.named_parameters()} == ours
    table = plain.patch_embed.pos_embedding  # non-persistent sin-cos table, not in the state dict
    assert table.data_ptr() == mvideo.patch_embed.pos_embedding.data_ptr()


@pytest.mark.parametrize(("key", "low", "high"), [("2b", 1.6e9, 1.8e9), ("5b", 5.0e9, 6.0e9)])
def test_published_sizes(key, low, high):
    """CogVideoX-2B has 1.69B transformer parameters and 1.5-5B is a 5B model: a typo in MODELS shows here."""
    with torch.device("meta"):
        model = MVideoTransformer3DModel(
            **gpu_mvideo.model_config(key, gpu_mvideo.GPU_SHAPE, scaled_down=False)
        )
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert gpu_mvideo.latent_grid(dict(model.config), gpu_mvideo.GPU_SHAPE) == (
        (13, 13, 60, 90) if key == "2b" else (13, 14, 60, 90)
    )


def test_cpu_run_says_scaled_down_and_writes_json(tmp_path, capsys):
    out = tmp_path / "gpu_mvideo.json"
    argv = ["--device", "cpu", "--model", "5b", "--steps", "2", "--repeats", "1", "--warmup", "0"]
    gpu_mvideo.main([*argv, "--json", str(out)])
    printed = capsys.readouterr().out
    assert "SCALED DOWN" in printed and "NOT the GPU figures" in printed

    results = json.loads(out.read_text())
    assert results["scaled_down"] is True and list(results["models"]) == ["5b"]
    model = results["models"]["5b"]
    # 9 frames -> 3 latent frames, front-padded to 4 for the temporal patch of 2; 226 + 2 x 4 x 6 tokens
    assert model["latents"] == [2, 4, 16, 8, 12] and model["video_latent_frames"] == 3
    assert model["tokens"] == 226 + 2 * 4 * 6
    assert model["baseline_check"]["max_abs_no_mask_vs_plain"] == 0
    assert model["baseline_check"]["mean_abs_mask_vs_plain"] > 0
    assert model["flops_per_step_counted"] == model["flops_per_step_analytic"]
    assert model["steps"] == 2 and model["run_s"] > 0
    assert model["memory_gib"]["run"]["working_gib"] > 0
    for name in ("ratio_step_mvideo_mask_over_plain", "ratio_achieved_over_matmul_peak"):
        assert model[name] > 0
    assert "xformers" in printed
