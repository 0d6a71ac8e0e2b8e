import hashlib

import numpy as np
import pytest

from generation.mvideo.shapes.motions import MOTION_FAMILIES
from generation.mvideo.shapes.world import COLORS, SHAPES, ShapesWorld, caption_for, parse_caption, shape_mask
from libs.media import MaskSequence


def test_masks_are_exact_object_pixels_carry_the_object_colour():
    world = ShapesWorld()
    for seed in range(20):
        sample = world.sample(seed)
        assert sample.video.shape == (8, 32, 32, 3) and sample.video.dtype == np.uint8
        masks = sample.masks
        assert isinstance(masks, MaskSequence) and masks.num_frames == 8
        assert list(masks.object_ids) == list(range(1, len(sample.objects) + 1))
        for t in range(sample.num_frames):
            id_map = masks.id_map(t)
            np.testing.assert_array_equal(id_map, sample.id_maps[t])
            for k, obj in enumerate(sample.objects, start=1):
                inside = id_map == k
                assert (sample.video[t][inside] == np.array(obj.rgb, dtype=np.uint8)).all()
            # Background pixels are the background image, which is far from every object colour.
            bg = sample.video[t][id_map == 0].astype(np.float32)
            np.testing.assert_allclose(bg, np.rint(sample.background[t][id_map == 0]), atol=0.5)
            for rgb in COLORS.values():
                assert np.linalg.norm(bg - np.array(rgb, dtype=np.float32), axis=-1).min() > 90


def test_captions_name_the_right_colours_and_shapes_in_slot_order():
    world = ShapesWorld()
    counts = set()
    for seed in range(40):
        sample = world.sample(seed)
        counts.add(len(sample.objects))
        assert parse_caption(sample.caption) == [(o.color, o.shape) for o in sample.objects]
        assert [o.label for o in sample.masks.objects] == [o.phrase for o in sample.objects]
        assert len({o.color for o in sample.objects}) == len(sample.objects)  # distinct colours
        slots = sample.slot_masks(3)
        assert slots.shape == (8, 3, 32, 32)
        for k in range(3):
            np.testing.assert_array_equal(slots[:, k], sample.id_maps == k + 1)
    assert counts == {1, 2, 3}
    assert caption_for(["red circle"]) == "a red circle"
    assert caption_for(["red circle", "blue square", "green triangle"]) == (
        "a red circle, a blue square and a green triangle"
    )


def test_deterministic_by_seed_and_split():
    world = ShapesWorld()
    a, b = world.sample(5), world.sample(5)
    np.testing.assert_array_equal(a.video, b.video)
    assert a.caption == b.caption
    other = world.sample(6)
    held_out = world.sample(5, split="eval")
    assert not np.array_equal(a.video, other.video)
    assert not np.array_equal(a.video, held_out.video)


def test_objects_move_and_every_shape_renders():
    sample = ShapesWorld(min_objects=1, max_objects=1).sample(0)
    assert not np.array_equal(sample.id_maps[0], sample.id_maps[-1])
    for shape in SHAPES:
        mask = shape_mask(shape, (16.0, 16.0), 6.0, 32, 32)
        assert 40 < mask.sum() < 140
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("hexagon", (0, 0), 1, 8, 8)
    with pytest.raises(ValueError, match="max_objects"):
        ShapesWorld(max_objects=7)


def test_object_count_weights():
    world = ShapesWorld(object_count_weights=(0.0, 1.0, 1.0))
    counts = {len(world.sample(seed).objects) for seed in range(30)}
    assert counts == {2, 3}
    with pytest.raises(ValueError, match="object_count_weights"):
        ShapesWorld(object_count_weights=(1.0, 1.0))


def _fingerprint(world: ShapesWorld, seeds: range, split: str) -> str:
    digest = hashlib.sha256()
    for seed in seeds:
        sample = world.sample(seed, split)
        digest.update(sample.video.tobytes())
        digest.update(sample.id_maps.tobytes())
        digest.update(sample.caption.encode())
        digest.update(np.asarray([c for o in sample.objects for c in o.centers], np.float64).tobytes())
        digest.update(sample.background.tobytes())
    return digest.hexdigest()[:16]


def test_training_samples_are_unchanged_by_the_motion_families():
    # Computed with the world as it was before motion families existed (commit fa822ec): the training data of
    # the committed default must not change because the world learned new motions.
    assert ShapesWorld().motion == "bounce"
    assert _fingerprint(ShapesWorld(), range(8), "train") == "c75a1e04d22ee9f3"
    assert _fingerprint(ShapesWorld(), range(8), "eval") == "fb6f0b679b2082bb"
    odd = ShapesWorld(height=24, width=40, num_frames=5, object_count_weights=(1.0, 2.0, 3.0))
    assert _fingerprint(odd, range(6), "train") == "0657d9f7084af939"
    tiny = ShapesWorld(height=16, width=16, num_frames=4, max_objects=2)
    assert _fingerprint(tiny, range(6), "train") == "0e67cfa6baf972a5"


def test_every_motion_family_renders_exact_masks_and_rejects_bad_settings():
    for motion in MOTION_FAMILIES:
        sample = ShapesWorld(motion=motion).sample(1, "eval")
        assert len(sample.objects) >= MOTION_FAMILIES[motion].min_objects
        for k, obj in enumerate(sample.objects, start=1):
            assert (sample.video[sample.id_maps == k] == np.array(obj.rgb, np.uint8)).all()
        assert parse_caption(sample.caption) == [(o.color, o.shape) for o in sample.objects]
    with pytest.raises(ValueError, match="unknown motion"):
        ShapesWorld(motion="teleport")
    with pytest.raises(ValueError, match="at least 2 objects"):
        ShapesWorld(motion="crossing", max_objects=1)
