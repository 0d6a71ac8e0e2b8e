import math

import numpy as np
import pytest
import torch

from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.shapes.model import build_shapes_pipeline
from generation.mvideo.training.config import SHAPES_TINY_SPEC, get_recipe
from generation.mvideo.training.trainer import MVideoDenoiser, checkpoint_dirs, train


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_training_steps_change_params_and_resume_is_bit_identical(tmp_path):
    config = get_recipe("shapes-tiny").replace(out=str(tmp_path / "straight"), max_steps=4, ema_decay=0.9)
    straight = train(config)
    assert straight.step == 4 and math.isfinite(straight.last_loss)
    assert (tmp_path / "straight" / "model_index.json").is_file()
    initial = build_shapes_pipeline(SHAPES_TINY_SPEC, seed=0)
    before = _state(initial.transformer)
    after = _state(straight.denoiser.transformer)
    assert any(not torch.equal(before[k], after[k]) for k in before)

    # The same run in two halves: stop at step 2 with a checkpoint, resume from it.
    split = config.replace(out=str(tmp_path / "split"), stop_after=2)
    first = train(split)
    assert first.step == 2 and first.out is None
    assert [p.name for p in checkpoint_dirs(tmp_path / "split" / "checkpoints")] == ["step-0000002"]
    second = train(split.replace(stop_after=None), resume="latest")
    assert second.step == 4 and second.out is not None
    assert second.state.losses[-2:] == straight.state.losses[-2:]
    for name, value in _state(second.denoiser).items():
        assert torch.equal(value, straight.denoiser.state_dict()[name]), name

    # The exported pipelines (EMA weights) are identical and load with from_pretrained.
    a = MVideoPipeline.from_pretrained(tmp_path / "straight")
    b = MVideoPipeline.from_pretrained(tmp_path / "split")
    for name, value in a.transformer.state_dict().items():
        assert torch.equal(value, b.transformer.state_dict()[name]), name


def test_lora_trains_only_lora_and_mask_layers_with_zero_initial_consistency(tmp_path):
    base = build_shapes_pipeline(SHAPES_TINY_SPEC, seed=1)
    base.save_pretrained(tmp_path / "base")
    config = get_recipe("shapes-tiny").replace(
        out=str(tmp_path / "lora"),
        init_from=str(tmp_path / "base"),
        train_text_encoder=False,
        lora_rank=2,
        learning_rate=1e-2,
        max_steps=3,
        batch_size=4,
        ema_decay=0.0,
        p_mask_drop=0.5,
        consistency_weight=1.0,
        consistency_teacher="auto",
    )
    result = train(config)
    # Step 1: LoRA B = 0 and the mask is dropped, so the model equals the frozen base (up to float rounding:
    # the teacher runs on the dropped samples only, a different batch shape).
    assert result.state.consistency[0] < 1e-10
    assert any(c > 1e-9 for c in result.state.consistency[1:]), result.state.consistency
    trained = result.denoiser
    before = {
        **{f"transformer.{k}": v for k, v in base.transformer.state_dict().items()},
        **{f"mask_encoder.{k}": v for k, v in base.mask_encoder.state_dict().items()},
        **{f"text_encoder.{k}": v for k, v in base.text_encoder.state_dict().items()},
    }
    changed = set()
    for name, value in trained.state_dict().items():
        if "lora_" in name:
            continue
        if not torch.equal(value, before[name.replace(".base_layer.", ".")]):
            changed.add(name)
    assert changed, "the mask layers should have trained"
    assert all(n.startswith(("transformer.mask_embed.", "mask_encoder.")) for n in changed), sorted(changed)
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert trainable and all(
        "lora_" in n or n.startswith(("transformer.mask_embed.", "mask_encoder.")) for n in trainable
    )
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    # The export merges LoRA into plain weights that load into the plain model class.
    exported = MVideoPipeline.from_pretrained(tmp_path / "lora")
    assert not any("lora" in k for k in exported.transformer.state_dict())


def test_denoiser_dropped_mask_equals_no_mask():
    pipe = build_shapes_pipeline(SHAPES_TINY_SPEC)
    torch.nn.init.normal_(pipe.transformer.mask_embed.weight)  # a trained-looking mask path
    denoiser = MVideoDenoiser(pipe.transformer, pipe.mask_encoder, pipe.text_encoder).eval()
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 4, 3, 16, 16, generator=g)
    t = torch.tensor([10, 500])
    ids = torch.randint(0, 10, (2, 12), generator=g)
    masks = (torch.rand(2, 4, 2, 16, 16, generator=g) > 0.5).float()
    with torch.no_grad():
        dropped = denoiser(noisy, t, ids, masks, torch.tensor([True, False]))
        none = denoiser(noisy, t, ids, None)
        kept = denoiser(noisy, t, ids, masks)
    np.testing.assert_allclose(dropped[1].numpy(), none[1].numpy(), atol=1e-6)
    np.testing.assert_allclose(dropped[0].numpy(), kept[0].numpy(), atol=1e-6)
    assert not torch.allclose(kept[1], none[1])


def test_bad_configs_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="pretrained"):
        train(
            get_recipe("shapes-tiny").replace(
                out=str(tmp_path), consistency_teacher="base", consistency_weight=1.0
            )
        )
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")
