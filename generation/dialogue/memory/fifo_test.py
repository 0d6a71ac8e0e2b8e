import numpy as np
import pytest

from generation.dialogue.memory.fifo import FifoMemory


def _vector(value: float, dim: int = 3) -> np.ndarray:
    return np.full(dim, value, dtype=np.float32)


def test_slots_fill_oldest_first_and_the_oldest_leaves_at_capacity():
    memory = FifoMemory(capacity=3, dim=3)
    for i in range(5):
        memory.push(f"m{i}", _vector(i + 1))
    assert len(memory) == 3
    assert [e.memory_id for e in memory.entries] == ["m2", "m3", "m4"]
    np.testing.assert_array_equal(memory.tensor()[:, 0], [3, 4, 5])
    assert memory.mask().all()


def test_empty_slots_are_zero_and_masked():
    memory = FifoMemory(capacity=4, dim=3)
    memory.push("a", _vector(2.0))
    assert memory.mask().tolist() == [True, False, False, False]
    assert memory.tensor().shape == (4, 3) and memory.tensor().dtype == np.float32
    assert not memory.tensor()[1:].any()


def test_wrong_dimension_and_sizes_are_refused():
    with pytest.raises(ValueError):
        FifoMemory(capacity=0, dim=3)
    memory = FifoMemory(capacity=2, dim=3)
    with pytest.raises(ValueError, match="4 dimensions"):
        memory.push("x", np.ones(4))


def test_relevant_ranks_by_cosine_and_applies_the_floor():
    memory = FifoMemory(capacity=4, dim=2)
    memory.push("east", np.array([1.0, 0.0]))
    memory.push("north", np.array([0.0, 1.0]))
    memory.push("north-east", np.array([1.0, 1.0]))
    ranked = memory.relevant(np.array([0.0, 2.0]), k=3, min_score=0.5)
    assert [e.memory_id for e, _ in ranked] == ["north", "north-east"]
    assert ranked[0][1] == pytest.approx(1.0) and ranked[1][1] == pytest.approx(np.sqrt(0.5))
