import sys
import types

import diffusers.utils
import pytest
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

from generation.mvideo.models.transformer_mvideo import MVideoXFormersAttnProcessor
from generation.mvideo.pipelines import (
    ATTENTION_BACKENDS,
    MaskGuidedVACEPipeline,
    MVideoPipeline,
    set_attention_backend,
)
from generation.mvideo.pipelines.loading import load_pipeline
from generation.mvideo.pipelines.testing import (
    tiny_mask_video,
    tiny_mvideo_components,
    tiny_vace_components,
    tiny_vace_pipeline,
)


def test_unknown_engine_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="unknown engine 'cogvideo'; choose one of: mvideo, vace"):
        load_pipeline("cogvideo", "/nowhere")


def test_each_engine_loads_its_pipeline_from_a_folder(tmp_path):
    MVideoPipeline(**tiny_mvideo_components(seed=0)).save_pretrained(tmp_path / "mvideo")
    mvideo = load_pipeline("mvideo", str(tmp_path / "mvideo"), torch_dtype=torch.bfloat16)
    assert isinstance(mvideo, MVideoPipeline) and mvideo.transformer.dtype == torch.bfloat16
    tiny_vace_pipeline().save_pretrained(tmp_path / "vace")
    vace = load_pipeline("vace", str(tmp_path / "vace"), torch_dtype=torch.bfloat16, num_mask_slots=2)
    assert isinstance(vace, MaskGuidedVACEPipeline) and vace.num_mask_slots == 2
    assert vace.transformer.dtype == torch.bfloat16 and vace.vae.dtype == torch.float32


@pytest.fixture(scope="module")
def pipes():
    mvideo = MVideoPipeline(**tiny_mvideo_components(seed=0))
    vace = MaskGuidedVACEPipeline(**tiny_vace_components(seed=0), num_mask_slots=2)
    for pipe in (mvideo, vace):
        pipe.set_progress_bar_config(disable=True)
    return {"mvideo": mvideo, "vace": vace}


def _generate(pipe: DiffusionPipeline) -> torch.Tensor:
    return pipe(
        prompt="a red square",
        mask_video=tiny_mask_video(),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        max_sequence_length=16,
    ).frames


def _backends_in_use(pipe: DiffusionPipeline) -> set[str]:
    processors = pipe.transformer.attn_processors.values()
    if isinstance(pipe, MVideoPipeline):
        return {
            "xformers" if isinstance(p, MVideoXFormersAttnProcessor) else type(p).__name__ for p in processors
        }
    return {str(getattr(p, "_attention_backend", None)) for p in processors}


@pytest.mark.parametrize("engine", ["mvideo", "vace"])
def test_sdpa_and_auto_on_cpu_and_xformers_is_a_value_error_that_says_how_to_fix_it(pipes, engine):
    pipe = pipes[engine]
    assert ATTENTION_BACKENDS == ("auto", "sdpa", "xformers")
    before = _generate(pipe)
    assert set_attention_backend(pipe, "sdpa") == "sdpa"
    expected = {"CogVideoXAttnProcessor2_0"} if engine == "mvideo" else {"AttentionBackendName.NATIVE"}
    assert _backends_in_use(pipe) == expected
    assert torch.equal(_generate(pipe), before)  # SDPA is each pipeline's default
    assert set_attention_backend(pipe, "auto") == "sdpa"  # CPU (and no xformers here)
    with pytest.raises(ValueError, match=r"'xformers' is unavailable: .*pip install 'kmono\[gpu\]'.*'sdpa'"):
        set_attention_backend(pipe, "xformers")
    assert _backends_in_use(pipe) == expected
    with pytest.raises(
        ValueError, match="unknown attention backend 'flash'; choose one of: auto, sdpa, xformers"
    ):
        set_attention_backend(pipe, "flash")


def test_xformers_installed_but_on_cpu_names_the_device(pipes, monkeypatch):
    monkeypatch.setattr(diffusers.utils, "is_xformers_available", lambda: True)
    with pytest.raises(ValueError, match="executes on cpu .*CUDA only"):
        set_attention_backend(pipes["mvideo"], "xformers")
    assert set_attention_backend(pipes["mvideo"], "auto") == "sdpa"


def test_auto_picks_xformers_when_installed_and_on_cuda(monkeypatch):
    """The choice and the processors it installs (xFormers' kernel and the CUDA device stand-ins on CPU)."""

    def fake_attention(q, k, v, op=None):  # xFormers layout (B, S, heads, d)
        return F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        ).transpose(1, 2)

    fake = types.ModuleType("xformers")
    fake.ops = types.SimpleNamespace(memory_efficient_attention=fake_attention)
    monkeypatch.setitem(sys.modules, "xformers", fake)
    monkeypatch.setitem(sys.modules, "xformers.ops", fake.ops)
    monkeypatch.setattr(diffusers.utils, "is_xformers_available", lambda: True)
    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    before = _generate(pipe)
    with monkeypatch.context() as cuda:
        cuda.setattr(MVideoPipeline, "_execution_device", property(lambda self: torch.device("cuda")))
        assert set_attention_backend(pipe, "auto") == "xformers"
    assert _backends_in_use(pipe) == {"xformers"}
    torch.testing.assert_close(_generate(pipe), before, rtol=1e-4, atol=1e-5)
    assert set_attention_backend(pipe, "sdpa") == "sdpa"
    assert _backends_in_use(pipe) == {"CogVideoXAttnProcessor2_0"}
    assert isinstance(next(iter(pipe.transformer.attn_processors.values())), CogVideoXAttnProcessor2_0)
