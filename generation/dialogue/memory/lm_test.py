import numpy as np
import torch

from generation.dialogue.memory.contextformer import ContextformerConfig, ContextformerLM
from generation.dialogue.memory.lm import (
    LMConfig,
    _stage1_sequence,
    build_tokenizer,
    encode_example,
    ids,
    memory_batch,
    memory_losses,
    new_lm,
)
from generation.dialogue.memory.task import EOS, TaskConfig, generate_dialogues


def test_word_level_tokenizer_round_trips_task_text_without_unknowns():
    tokenizer = build_tokenizer()
    for dialogue in generate_dialogues(5, split="test", seed=0):
        text = f"{dialogue.history()} {dialogue.prompt()} {dialogue.target()}"
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert encoded == ids(tokenizer, text)
        assert tokenizer.unk_token_id not in encoded
        assert tokenizer.decode(encoded) == text


def test_window_example_keeps_the_last_k_tokens_and_knows_where_the_fact_is():
    tokenizer = build_tokenizer()
    dialogue = generate_dialogues(1, split="test", seed=4)[0]
    example = encode_example(tokenizer, dialogue, window_tokens=10, memory_slots=6)
    history = ids(tokenizer, dialogue.history())
    question = ids(tokenizer, dialogue.prompt())
    assert example.history == [tokenizer.bos_token_id, *history, *question]
    assert example.window == [tokenizer.bos_token_id, *history[-10:], *question]
    assert example.turns == dialogue.turns[-6:]
    assert example.answer[-1] == tokenizer.convert_tokens_to_ids(EOS)
    assert not example.fact_in_window  # facts are stated in the first turns, 10 tokens is the last turn or so
    assert encode_example(tokenizer, dialogue, window_tokens=0, memory_slots=6).fact_in_window


def test_stage1_sequences_label_exactly_the_answers_of_facts_still_in_context():
    tokenizer = build_tokenizer()
    rng = np.random.default_rng(0)
    for _ in range(20):
        sequence, spans = _stage1_sequence(tokenizer, rng, TaskConfig())
        words = tokenizer.convert_ids_to_tokens(sequence)
        for begin, end in spans:
            answer = words[begin : end - 1]
            assert words[end - 1] == EOS and words[begin - 1] == "<a>"
            context = " ".join(words[:begin])
            assert " ".join(answer) in context  # the answer can be read from the context
    assert torch.tensor(sequence).dtype == torch.long


def test_fact_slots_name_the_memory_slot_key_and_value_of_every_remembered_fact():
    tokenizer = build_tokenizer()
    for dialogue in generate_dialogues(10, split="test", seed=5):
        example = encode_example(tokenizer, dialogue, window_tokens=32, memory_slots=12)
        first_kept = len(dialogue.turns) - 12
        expected = {k for k, turn in dialogue.fact_turns.items() if turn >= first_kept}
        assert len(example.fact_slots) == len(expected)
        for slot, key, value in example.fact_slots:
            turn = example.turns[slot].split()
            assert (
                tokenizer.convert_ids_to_tokens(key) in turn
                and tokenizer.convert_ids_to_tokens(value) in turn
            )


def test_fact_token_loss_teaches_the_prefix_to_state_the_remembered_facts():
    tokenizer = build_tokenizer()
    lm = new_lm(tokenizer, LMConfig(hidden_size=32, num_layers=1, intermediate_size=64), seed=0)
    config = ContextformerConfig(
        memory_slots=8, memory_dim=32, num_queries=8, hidden_size=32, max_turn_tokens=12
    )
    torch.manual_seed(0)
    model = ContextformerLM(config, lm, tokenizer)
    task = TaskConfig(num_turns=8, num_facts=2, facts_in_first_turns=4)
    dialogues = generate_dialogues(8, split="train", seed=0, config=task)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(60):
        answer_loss, fact_loss = memory_losses(model, dialogues)
        assert torch.isfinite(answer_loss)
        optimizer.zero_grad()
        fact_loss.backward()
        optimizer.step()
        losses.append(fact_loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # the fitted soft tokens make a fact's key and value more likely in its slot than in the slots without facts
    example = encode_example(
        tokenizer, dialogues[0], config.window_tokens, config.memory_slots, fact_outside=True
    )
    *_, turn_ids, turn_mask, slot_mask = memory_batch(model, [example])
    with torch.no_grad():
        log_probs = model.reader.token_logits(model.encode_turn_ids(turn_ids, turn_mask), slot_mask)[0]
    log_probs = log_probs.log_softmax(dim=-1)
    fact_slots = {slot for slot, _, _ in example.fact_slots}
    others = [s for s in range(len(example.turns)) if s not in fact_slots]
    for slot, key, value in example.fact_slots:
        for token in (key, value):
            assert log_probs[slot, token] > log_probs[others, token].mean() + 1.0
