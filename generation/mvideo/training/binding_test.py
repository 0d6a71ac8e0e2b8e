import torch

from generation.mvideo.shapes.components import build_tokenizer
from generation.mvideo.shapes.model import build_shapes_pipeline
from generation.mvideo.training import binding
from generation.mvideo.training.config import SHAPES_TINY_SPEC
from generation.mvideo.training.trainer import MVideoDenoiser


def test_token_slots_and_phrase_masks():
    masks = torch.zeros(1, 4, 2, 8, 8)
    masks[0, :, 1, 0:4, 4:8] = 1.0  # slot 1 fills the top-right 4 x 4 patch in every frame
    masks[0, :2, 0, 4:6, 0:4] = 1.0  # slot 0 covers half of the bottom-left patch, first frame group only
    slots = binding.token_slots(masks, torch.tensor([True]), patch=4, patch_t=2, spatial=1)
    # tokens: 2 frame groups x 2 x 2 patches, row-major
    assert slots.tolist() == [[-1, 1, 0, -1, -1, 1, -1, -1]]
    assert binding.token_slots(masks, torch.tensor([False]), 4, 2, 1).eq(-1).all()

    tokenizer = build_tokenizer(16)
    ids = tokenizer(
        ["a red circle and a blue square", ""], padding="max_length", max_length=16, return_tensors="pt"
    )
    separators = tokenizer.convert_tokens_to_ids([",", "and"])
    phrases = binding.phrase_masks(ids.input_ids, separators, tokenizer.all_special_ids, slots=3)
    # [CLS] a red circle and a blue square [SEP]: phrase 0 = tokens 1-3, phrase 1 = tokens 5-7
    assert phrases[0, 0].nonzero().flatten().tolist() == [1, 2, 3]
    assert phrases[0, 1].nonzero().flatten().tolist() == [5, 6, 7]
    assert not phrases[0, 2].any() and not phrases[1].any()


def test_binding_term_is_low_when_attention_is_on_the_right_phrase():
    targets = binding.BindingTargets(
        token_slot=torch.tensor([[0, 1, -1]]),
        phrase_mask=torch.tensor([[[True, False], [False, True]]]),
    )
    key = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (B, h, L, d): text token j points along axis j
    right = torch.tensor([[[[9.0, 0.0], [0.0, 9.0], [5.0, 5.0]]]])  # (B, h, N, d)
    wrong = right.flip(-1)
    assert binding.binding_term(right, key, targets) < 0.01 < binding.binding_term(wrong, key, targets)
    empty = binding.BindingTargets(torch.tensor([[-1, -1, -1]]), targets.phrase_mask)
    assert binding.binding_term(right, key, empty) is None


def test_processor_keeps_the_model_output_and_records_a_term():
    pipe = build_shapes_pipeline(SHAPES_TINY_SPEC)
    denoiser = MVideoDenoiser(pipe.transformer, pipe.mask_encoder, pipe.text_encoder).eval()
    g = torch.Generator().manual_seed(0)
    noisy, t = torch.randn(1, 4, 3, 16, 16, generator=g), torch.tensor([500])
    ids = build_tokenizer(12)(
        ["a red circle and a blue square"], padding="max_length", max_length=12, return_tensors="pt"
    ).input_ids
    masks = torch.zeros(1, 4, 2, 16, 16)
    masks[0, :, 0, :8, :8] = 1.0
    with torch.no_grad():
        plain = denoiser(noisy, t, ids, masks)
        recorder = binding.install(pipe.transformer, heads=1)
        recorder.targets = binding.BindingTargets(
            binding.token_slots(masks, torch.tensor([True]), 4, SHAPES_TINY_SPEC.patch_size_t or 1, 1),
            binding.phrase_masks(ids, [7, 6], [0, 1, 2, 3, 4], slots=2),
        )
        recorded = denoiser(noisy, t, ids, masks)
    torch.testing.assert_close(recorded, plain)
    loss = recorder.take_loss()
    assert loss is not None and torch.isfinite(loss) and recorder.terms == []
    binding.uninstall(pipe.transformer)
    assert not any(
        isinstance(p, binding.BindingAttnProcessor) for p in pipe.transformer.attn_processors.values()
    )
