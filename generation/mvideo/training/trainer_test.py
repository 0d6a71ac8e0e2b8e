import copy
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from generation.mvideo.defaults.engine_file import read_engine_defaults
from generation.mvideo.jobs import spec_from_dir
from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.pipelines.loading import sampling_call_defaults
from generation.mvideo.shapes.model import build_shapes_pipeline
from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from generation.mvideo.training.config import SHAPES_TINY_SPEC, get_recipe
from generation.mvideo.training.trainer import (
    DenoiserEMA,
    MVideoDenoiser,
    build_lr_scheduler,
    checkpoint_dirs,
    train,
)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_training_steps_change_params_and_resume_is_bit_identical(tmp_path):
    config = get_recipe("shapes-tiny").replace(out=str(tmp_path / "straight"), max_steps=4, ema_decay=0.9)
    straight = train(config)
    assert straight.step == 4 and math.isfinite(straight.last_loss)
    assert (tmp_path / "straight" / "model_index.json").is_file()
    assert spec_from_dir(tmp_path / "straight").num_inference_steps == SHAPES_SAMPLING["num_inference_steps"]
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
    # a fine-tune of a folder without engine.json samples as that pipeline's call defaults
    assert read_engine_defaults(tmp_path / "lora") == sampling_call_defaults(exported)
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


def test_exported_ema_weights_follow_the_ema_formula_over_the_live_weights(tmp_path):
    decay = 0.9
    config = get_recipe("shapes-tiny").replace(
        out=str(tmp_path / "out"), max_steps=3, ema_decay=decay, checkpoint_every=1, keep_checkpoints=0
    )
    result = train(config)
    live = [
        load_file(path / "model.safetensors") for path in checkpoint_dirs(tmp_path / "out" / "checkpoints")
    ]
    assert len(live) == 3
    # diffusers' EMAModel: the average starts at the weights after step 1, then decay min(d, n / (n + 9))
    expected = dict(live[0])
    for n, weights in enumerate(live[1:], start=2):
        d = min(decay, n / (n + 9))
        expected = {name: d * expected[name] + (1 - d) * value for name, value in weights.items()}
    exported = MVideoPipeline.from_pretrained(tmp_path / "out")
    exported_state = {
        f"{part}.{name}": value
        for part in ("transformer", "mask_encoder", "text_encoder")
        for name, value in getattr(exported, part).state_dict().items()
    }
    final = result.denoiser.state_dict()
    assert set(exported_state) <= set(expected)
    differ = 0
    for name, value in exported_state.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
        differ += not torch.allclose(value, final[name], rtol=1e-4, atol=1e-6)
    assert differ > len(exported_state) // 2, "the EMA weights should differ from the live weights"


def test_ema_reads_checkpoints_of_the_hand_written_ema_and_its_own():
    ema = DenoiserEMA(torch.nn.Linear(3, 2), decay=0.9)
    ema.load_state_dict(
        {"num_updates": 7, "decay": 0.99, "module": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}}
    )
    assert ema.optimization_step == 7 and ema.decay == 0.99
    assert torch.equal(ema.module.weight, torch.ones(2, 3))
    other = DenoiserEMA(torch.nn.Linear(3, 2), decay=0.9)
    other.load_state_dict(copy.deepcopy(ema.state_dict()))
    assert other.optimization_step == 7 and torch.equal(other.module.weight, torch.ones(2, 3))
    assert other.shadow_params[0] is other.module.weight  # the module holds the averages


@pytest.mark.parametrize("num_processes", [1, 2])
def test_lr_schedules_warm_up_then_hold_or_decay_to_the_floor(num_processes):
    def lrs(schedule):
        config = get_recipe("shapes-tiny").replace(
            learning_rate=1.0, lr_warmup_steps=2, max_steps=6, lr_schedule=schedule, lr_min_ratio=0.1
        )
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
        scheduler = build_lr_scheduler(optimizer, config, num_processes)
        seen = []
        for _ in range(config.max_steps + 1):
            seen.append(scheduler.get_last_lr()[0])
            for _ in range(num_processes):  # accelerate steps a prepared scheduler once per process
                optimizer.step()
                scheduler.step()
        return seen

    assert lrs("constant") == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert lrs("cosine") == pytest.approx([0.0, 0.5, *cosine])
    with pytest.raises(ValueError, match="lr_schedule"):
        lrs("linear")


def test_x_prediction_trains_and_exports_a_sample_predicting_scheduler(tmp_path):
    import dataclasses

    spec = dataclasses.replace(SHAPES_TINY_SPEC, prediction_type="sample")
    config = get_recipe("shapes-tiny").replace(out=str(tmp_path / "x"), max_steps=2, shapes=spec)
    result = train(config)
    assert math.isfinite(result.last_loss)
    pipe = MVideoPipeline.from_pretrained(tmp_path / "x")
    assert pipe.scheduler.config.prediction_type == "sample"
    bad = dataclasses.replace(SHAPES_TINY_SPEC, prediction_type="epsilon")
    with pytest.raises(ValueError, match="prediction types"):
        train(get_recipe("shapes-tiny").replace(out=str(tmp_path / "e"), max_steps=1, shapes=bad))
