import numpy as np
import pytest

from generation.mvideo.shapes.layout import DEFAULT_SHAPE, LayoutPriors, plan_layout, shape_of
from generation.mvideo.shapes.world import ShapesWorld, shape_mask
from libs.errors import FieldError

SIZE = dict(width=48, height=40, num_frames=8, fps=8.0)


def test_one_object_per_noun_phrase_labelled_with_its_phrase_in_prompt_order():
    seq = plan_layout("a red circle, a blue square and a green triangle", seed=0, **SIZE)
    assert [o.label for o in seq.objects] == ["red circle", "blue square", "green triangle"]
    assert (seq.width, seq.height, seq.num_frames, seq.fps) == (48, 40, 8, 8.0)
    for obj in seq.objects:  # every object is drawn in the first frame at least partly
        assert seq.mask(0, obj.id).any()


def test_the_shape_word_decides_the_mask_shape():
    assert shape_of("blue triangle") == "triangle" and shape_of("a dog") == DEFAULT_SHAPE
    seq = plan_layout("a yellow diamond", seed=4, **SIZE)
    mask = seq.mask(0, 1)
    ys, xs = np.nonzero(mask)
    center = ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
    radius = (xs.max() - xs.min() + 1) / 2 / 1.15
    # The planned mask is the world's diamond around its own centre, not a disk of the same size.
    diamond = shape_mask("diamond", center, radius, 40, 48)
    disk = shape_mask("circle", center, radius * 1.15, 40, 48)
    assert (mask & diamond).sum() / (mask | diamond).sum() > 0.8
    assert (mask & disk).sum() / (mask | disk).sum() < 0.75


def test_objects_move_and_the_plan_is_a_pure_function_of_the_seed():
    a = plan_layout("a red circle and a cyan square", seed=7, **SIZE)
    b = plan_layout("a red circle and a cyan square", seed=7, **SIZE)
    c = plan_layout("a red circle and a cyan square", seed=8, **SIZE)
    assert np.array_equal(a.to_dense(), b.to_dense())
    assert not np.array_equal(a.to_dense(), c.to_dense())
    first, last = a.mask(0, 1), a.mask(a.num_frames - 1, 1)
    assert not np.array_equal(first, last)  # the training motion never stands still


def test_sizes_follow_the_priors_and_objects_beyond_the_slots_are_dropped():
    side = min(SIZE["width"], SIZE["height"])
    seq = plan_layout("a red circle", seed=1, priors=LayoutPriors(radius_range=(0.3, 0.3)), **SIZE)
    area = seq.mask(0, 1).sum()
    assert abs(area - np.pi * (0.3 * side) ** 2) < 0.15 * area
    world = ShapesWorld()
    assert LayoutPriors().radius_range == world.radius_range
    many = plan_layout(
        "a red circle, a blue square, a green circle and a cyan diamond", seed=0, max_objects=2, **SIZE
    )
    assert [o.label for o in many.objects] == ["red circle", "blue square"]


def test_a_prompt_naming_nothing_is_refused_naming_the_prompt():
    with pytest.raises(FieldError) as error:
        plan_layout("a , and the", seed=0, **SIZE)
    assert error.value.field == "prompt"
