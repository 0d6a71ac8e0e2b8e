from generation.dialogue.memory.task import (
    ASSISTANT,
    FACT_KEYS,
    TEST_STATEMENTS,
    TRAIN_STATEMENTS,
    USER,
    TaskConfig,
    generate_dialogues,
    value_pool,
    vocabulary,
)


def test_same_seed_same_dialogues_and_splits_differ():
    assert generate_dialogues(5, split="train", seed=3) == generate_dialogues(5, split="train", seed=3)
    assert generate_dialogues(5, split="train", seed=3) != generate_dialogues(5, split="test", seed=3)


def test_values_are_one_word_and_drawn_independently_of_the_key():
    for key in FACT_KEYS:
        assert all(len(v.split()) == 1 for v in value_pool(key))
    dialogues = generate_dialogues(400, split="train", seed=2)
    for key in ("sister", "parcel"):
        values = {d.facts[key] for d in dialogues if key in d.facts}
        assert len(values) > len(value_pool(key)) // 2  # no key has a value to memorise


def test_dialogues_state_their_facts_with_their_split_s_templates():
    for split in ("test", "train"):
        for dialogue in generate_dialogues(30, split=split, seed=0):
            key = next(k for k, v in dialogue.facts.items() if v == dialogue.answer)
            kind = FACT_KEYS[key][0]
            assert dialogue.answer in value_pool(key)
            stated = dialogue.turns[dialogue.fact_turn]
            assert dialogue.answer in stated.split()
            heads = {
                t.split("{")[0] for t in (TEST_STATEMENTS if split == "test" else TRAIN_STATEMENTS)[kind]
            }
            body = stated.removeprefix(f"{USER} ")
            assert any(body.startswith(h) for h in heads) or body.startswith(dialogue.answer)


def test_dialogue_shape_roles_and_vocabulary():
    config = TaskConfig(num_turns=12, num_facts=3, facts_in_first_turns=6)
    words = set(vocabulary())
    for dialogue in generate_dialogues(20, split="test", seed=1, config=config):
        assert len(dialogue.turns) == 12 and len(dialogue.facts) == 3
        assert dialogue.fact_turn < 6 and dialogue.fact_turn % 2 == 0
        assert [t.split()[0] for t in dialogue.turns] == [USER, ASSISTANT] * 6
        text = f"{dialogue.history()} {dialogue.prompt()} {dialogue.target()}"
        assert set(text.split()) <= words
