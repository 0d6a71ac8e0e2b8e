from generation.dialogue.memory.task import (
    ASSISTANT,
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


def test_value_pools_are_disjoint_and_every_token_appears_in_every_position_of_both():
    for kind in ("name", "number"):
        train, test = set(value_pool(kind, "train")), set(value_pool(kind, "test"))
        assert train and test and not train & test
        assert 0.15 < len(test) / (len(train) + len(test)) < 0.25
        for pool in (train, test):
            positions = list(zip(*(v.split() for v in pool), strict=True))
            train_positions = list(zip(*(v.split() for v in train), strict=True))
            assert [set(p) for p in positions] == [set(p) for p in train_positions]


def test_test_dialogues_use_only_test_values_and_templates():
    for split, other in (("test", "train"), ("train", "test")):
        for dialogue in generate_dialogues(30, split=split, seed=0):
            kind = "name" if len(dialogue.answer.split()) == 2 else "number"
            assert dialogue.answer in value_pool(kind, split)
            assert dialogue.answer not in value_pool(kind, other)
            stated = dialogue.turns[dialogue.fact_turn]
            assert dialogue.answer in stated
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
