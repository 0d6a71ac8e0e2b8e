import dataclasses

import pytest
import torch

from generation.dialogue.memory.contextformer import ContextformerConfig, ContextformerLM
from generation.dialogue.memory.lm import LMConfig, build_tokenizer, new_lm

TINY_LM = LMConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)
TINY = ContextformerConfig(
    memory_slots=4,
    memory_dim=24,
    num_queries=3,
    hidden_size=16,
    num_heads=2,
    max_turn_tokens=6,
    turn_pool_queries=2,
)
TURNS = ["<u> my sister 's name is mara .", "<a> got it .", "<u> the parcel number is 4821 ."]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm")
    tokenizer = build_tokenizer()
    new_lm(tokenizer, TINY_LM, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _model(lm_dir, **changes) -> ContextformerLM:
    return ContextformerLM.from_config(dataclasses.replace(TINY, lm_path=str(lm_dir), **changes), seed=0)


def _memory(model: ContextformerLM, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    slots = model.config.memory_slots
    vectors = torch.zeros(1, slots, model.config.memory_dim)
    vectors[0, : len(texts)] = torch.from_numpy(model.embed_turns(texts))
    mask = torch.zeros(1, slots, dtype=torch.bool)
    mask[0, : len(texts)] = True
    return vectors, mask


def _prompt(model: ContextformerLM, text: str = "<u> what is my parcel number ? <a>") -> torch.Tensor:
    return torch.tensor([model.tokenizer.convert_tokens_to_ids(["<bos>", *text.split()])])


def test_shapes_of_turn_vectors_and_prefix(lm_dir):
    model = _model(lm_dir)
    assert model.embed_turns(TURNS).shape == (3, TINY.memory_dim)
    memory, mask = _memory(model, TURNS)
    assert model.prefix(memory, mask).shape == (1, TINY.num_queries, TINY_LM.hidden_size)
    _, logits = model(_prompt(model), memory=memory, memory_mask=mask)
    assert logits.shape == (1, _prompt(model).shape[1], len(model.tokenizer))


def test_empty_slots_are_ignored(lm_dir):
    model = _model(lm_dir).eval()
    memory, mask = _memory(model, TURNS)
    garbage = memory.clone()
    garbage[0, len(TURNS) :] = torch.randn(TINY.memory_slots - len(TURNS), TINY.memory_dim) * 10
    torch.testing.assert_close(model.prefix(memory, mask), model.prefix(garbage, mask))
    assert not torch.allclose(model.prefix(memory, mask), model.prefix(garbage, torch.ones_like(mask)))


def test_an_empty_memory_leaves_the_lm_exactly_as_it_is(lm_dir):
    model = _model(lm_dir).eval()
    prompt = _prompt(model)
    memory = torch.randn(1, TINY.memory_slots, TINY.memory_dim)
    empty = torch.zeros(1, TINY.memory_slots, dtype=torch.bool)
    with torch.no_grad():
        plain = model.lm(input_ids=prompt).logits
        _, without = model(prompt)
        _, with_empty = model(prompt, memory=memory, memory_mask=empty)
        _, with_memory = model(prompt, memory=memory, memory_mask=~empty)
    torch.testing.assert_close(without, plain, rtol=0, atol=0)
    torch.testing.assert_close(with_empty, plain, rtol=1e-5, atol=1e-5)
    assert (with_memory - plain).abs().max() > 1e-3  # a filled memory does reach the LM


def test_gradients_reach_the_queries_and_projections_and_not_the_frozen_lm(lm_dir):
    model = _model(lm_dir).train()
    ids, mask = model.turn_token_ids(TURNS)
    memory = model.encode_turn_ids(ids[None], mask[None])
    memory = torch.cat([memory, torch.zeros(1, TINY.memory_slots - len(TURNS), TINY.memory_dim)], dim=1)
    slot_mask = torch.tensor([[True] * len(TURNS) + [False] * (TINY.memory_slots - len(TURNS))])
    prompt = _prompt(model, "<u> what is my parcel number ? <a> 4821 <eos>")
    labels = torch.full_like(prompt, -100)
    labels[0, -2:] = prompt[0, -2:]
    loss, _ = model(prompt, memory=memory, memory_mask=slot_mask, labels=labels)
    loss.backward()
    for name in ("queries", "w_k.weight", "w_v.weight", "project.weight"):
        grad = dict(model.reader.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.turn_encoder.pool_queries.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in model.lm.parameters())


def test_lora_adapters_train_and_start_as_the_plain_lm(lm_dir):
    model = _model(lm_dir, lora_rank=2).eval()
    prompt = _prompt(model)
    with torch.no_grad():
        _, adapted = model(prompt)
        with model.without_adapter():
            _, plain = model(prompt)
    torch.testing.assert_close(adapted, plain)  # LoRA's B starts at zero
    lora = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)


def test_save_and_load_round_trip(lm_dir, tmp_path):
    model = _model(lm_dir, lora_rank=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)  # LoRA's B off zero, so the adapters are part of the check
    model.save_pretrained(tmp_path / "memory")
    loaded = ContextformerLM.from_pretrained(tmp_path / "memory")
    memory, mask = _memory(model, TURNS)
    with torch.no_grad():
        _, before = model(_prompt(model), memory=memory, memory_mask=mask)
        _, after = loaded(_prompt(loaded), memory=memory, memory_mask=mask)
    torch.testing.assert_close(before, after)
    torch.testing.assert_close(
        torch.from_numpy(loaded.embed_turns(TURNS)), torch.from_numpy(model.embed_turns(TURNS))
    )
    saved = {p.name for p in (tmp_path / "memory").iterdir()}
    assert saved == {"memory_config.json", "memory.safetensors"}  # only the trainable parts, not the LM


def test_cached_batched_greedy_generation_matches_step_by_step_argmax(lm_dir):
    model = _model(lm_dir).eval()
    memory, mask = _memory(model, TURNS)
    prompts = [_prompt(model)[0].tolist(), _prompt(model, "<u> hi <a>")[0].tolist()]
    batched = model.generate(
        prompts, memory.expand(2, -1, -1), mask.expand(2, -1), max_new_tokens=4, eos_token_id=-1
    )
    for prompt, got in zip(prompts, batched, strict=True):
        ids = list(prompt)
        for _ in range(4):
            with torch.no_grad():
                _, logits = model(torch.tensor([ids]), memory=memory, memory_mask=mask)
            ids.append(int(logits[0, -1].argmax()))
        assert got == ids[len(prompt) :]


def test_wraps_a_gpt2_style_lm_through_inputs_embeds(lm_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    )
    model = ContextformerLM(dataclasses.replace(TINY, lm_path=str(lm_dir)), gpt2, tokenizer).eval()
    memory, mask = _memory(model, TURNS)
    with torch.no_grad():
        _, logits = model(_prompt(model), memory=memory, memory_mask=mask)
        _, empty = model(_prompt(model), memory=memory, memory_mask=torch.zeros_like(mask))
    torch.testing.assert_close(empty, gpt2(input_ids=_prompt(model)).logits, rtol=1e-5, atol=1e-5)
    assert logits.shape == empty.shape and not torch.allclose(logits, empty)


def test_prefix_positions_are_soft_tokens_of_the_lm_vocabulary(lm_dir):
    model = _model(lm_dir).eval()
    memory, mask = _memory(model, TURNS)
    with torch.no_grad():
        weights = model.reader.token_logits(memory, mask).softmax(dim=-1)  # (1, Nq, V)
        expected = weights @ model.lm.get_input_embeddings().weight
        torch.testing.assert_close(model.prefix(memory, mask), expected)
    assert weights.shape[-1] == len(model.tokenizer)


def test_query_i_starts_out_reading_slot_i(lm_dir):
    model = _model(lm_dir, num_queries=TINY.memory_slots).eval()
    memory = torch.randn(1, TINY.memory_slots, TINY.memory_dim)
    mask = torch.ones(1, TINY.memory_slots, dtype=torch.bool)
    with torch.no_grad():
        before = model.reader.token_logits(memory, mask)[0]
        for slot in range(TINY.memory_slots):
            changed = memory.clone()
            changed[0, slot] = torch.randn(TINY.memory_dim)
            moved = (model.reader.token_logits(changed, mask)[0] - before).norm(dim=-1)  # (Nq,)
            assert int(moved.argmax()) == slot
