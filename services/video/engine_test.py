import pytest
import torch

from services.video.engine import load_mvideo_engine, torch_dtype


def test_dtype_auto_is_bfloat16_on_cuda_and_float32_on_cpu():
    assert torch_dtype("auto", "cuda:0") == torch.bfloat16
    assert torch_dtype("auto", "cpu") == torch.float32
    assert torch_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        torch_dtype("fp8", "cpu")


def test_the_engine_loads_its_weights_in_the_asked_dtype():
    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", dtype="bfloat16", torch_threads=1)
    assert engine.pipe.transformer.dtype == torch.bfloat16


def test_a_missing_pipeline_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="kmono mvideo train --recipe shapes-default"):
        load_mvideo_engine(path=str(tmp_path), tiny=False, device="cpu")
