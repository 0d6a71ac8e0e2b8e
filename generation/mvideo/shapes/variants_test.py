import numpy as np
import pytest

from generation.mvideo.shapes.variants import shift_id_maps, shift_vector, shuffled_slots
from generation.mvideo.shapes.world import ShapesWorld


def test_shift_has_the_asked_length_keeps_objects_in_frame_and_is_deterministic():
    world = ShapesWorld()
    for seed in range(8):
        sample = world.sample(seed, "eval")
        dy, dx = shift_vector(sample.id_maps, (7.0, 10.0), np.random.default_rng(seed))
        assert 7.0 <= np.hypot(dy, dx) <= 10.0
        assert (dy, dx) == shift_vector(sample.id_maps, (7.0, 10.0), np.random.default_rng(seed))
        moved = shift_id_maps(sample.id_maps, dy, dx)
        # objects of at most 11 px move by 7-10 px in a 32 px frame: one such shift keeps every pixel
        assert (moved > 0).sum() == (sample.id_maps > 0).sum()
        np.testing.assert_array_equal(moved, np.roll(sample.id_maps, (dy, dx), axis=(1, 2)))


def test_shift_drops_what_leaves_the_frame():
    ids = np.zeros((1, 6, 6), np.int32)
    ids[0, 0, :] = 1
    np.testing.assert_array_equal(shift_id_maps(ids, -1, 0), np.zeros_like(ids))
    down = shift_id_maps(ids, 2, 3)
    assert down[0, 2, 3:].all() and down.sum() == 3
    with pytest.raises(ValueError, match="no integer shift"):
        shift_vector(ids, (0.2, 0.5), np.random.default_rng(0))


def test_shuffled_slots_are_a_non_identity_order_with_each_slot_labelled_by_its_object():
    world = ShapesWorld(min_objects=2, max_objects=3)
    for seed in range(10):
        sample = world.sample(seed, "eval")
        slots, labels, perm = shuffled_slots(sample, 3, np.random.default_rng(seed))
        n = len(sample.objects)
        assert perm != tuple(range(n)) and sorted(perm) == list(range(n))
        assert labels == [sample.objects[k].phrase for k in perm] + [None] * (3 - n)
        for j, k in enumerate(perm):
            np.testing.assert_array_equal(slots[:, j], sample.id_maps == k + 1)
        assert not slots[:, n:].any()
    with pytest.raises(ValueError, match="two objects"):
        shuffled_slots(ShapesWorld(max_objects=1).sample(0), 3, np.random.default_rng(0))
