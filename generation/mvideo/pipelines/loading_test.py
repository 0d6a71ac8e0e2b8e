import pytest
import torch

from generation.mvideo.pipelines import MaskGuidedVACEPipeline, MVideoPipeline
from generation.mvideo.pipelines.loading import load_pipeline
from generation.mvideo.pipelines.testing import tiny_mvideo_components, tiny_vace_pipeline


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
