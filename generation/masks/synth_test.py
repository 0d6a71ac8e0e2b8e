"""Procedural sequences: shapes, sizes, trajectories, templates, covering order, errors."""

from __future__ import annotations

import numpy as np
import pytest

from generation.masks.synth import MaskTemplate, SyntheticObject, draw_shape, synthesize
from generation.masks.testing import moving_boxes
from generation.masks.trajectory import FieldError, Trajectory
from libs.media import Visibility


def test_shapes_have_the_expected_pixels():
    square = draw_shape("square", 10, 10, (10, 10), (24, 20))
    assert square.sum() == 100 and square[5:15, 5:15].all()
    circle = draw_shape("circle", 10, 10, (12, 10), (24, 20))
    assert abs(int(circle.sum()) - np.pi * 25) < 8 and circle[10, 12] and not circle[5, 7]
    ellipse = draw_shape("ellipse", 16, 6, (12, 10), (24, 20))
    ys, xs = np.nonzero(ellipse)
    assert xs.max() - xs.min() + 1 == 16 and ys.max() - ys.min() + 1 == 6
    upright = draw_shape("ellipse", 16, 6, (12, 10), (24, 20), degrees=90)
    ys, xs = np.nonzero(upright)
    assert ys.max() - ys.min() + 1 == 16 and xs.max() - xs.min() + 1 == 6
    assert draw_shape("square", 10, 10, (10, 10), (24, 20), scale=0.5).sum() == 25
    assert not draw_shape("circle", 10, 10, (-20, -20), (24, 20)).any()


def test_a_ball_follows_its_path_and_is_cut_at_the_frame_edge():
    path = Trajectory.parse(["0:10,10", "15:50,40"])
    seq = synthesize(
        [SyntheticObject("circle", path, width=8, label="ball")], width=56, height=44, num_frames=16, fps=8
    )
    assert seq.objects[0].label == "ball" and seq.objects[0].score == 1.0
    for t in (0, 7, 15):
        box = seq.box(t, 1)
        assert ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2) == pytest.approx(tuple(path.at(t)), abs=1)
    edge = synthesize([SyntheticObject("square", (0, 0), width=10)], width=20, height=20, num_frames=1, fps=1)
    assert edge.area(0, 1) == 25


def test_later_objects_cover_earlier_ones_and_trajectories_animate_scale_and_rotation():
    objects = [
        SyntheticObject("square", (10, 10), width=10),
        SyntheticObject("circle", Trajectory([(0, (10, 10)), (3, (30, 10))]), width=6),
        SyntheticObject("ellipse", (30, 30), width=12, height=4, rotation=Trajectory([(0, 0.0), (3, 90.0)])),
        SyntheticObject("square", (10, 30), width=4, scale=Trajectory([(0, 1.0), (3, 2.0)], "smooth")),
    ]
    seq = synthesize(objects, width=40, height=40, num_frames=4, fps=4)
    assert seq.object_ids == (1, 2, 3, 4)
    assert seq.visibility(0, 1) is Visibility.OCCLUDED and seq.area(0, 1) < 100
    assert seq.visibility(3, 1) is Visibility.VISIBLE and seq.area(3, 1) == 100
    assert (seq.box(0, 3).width, seq.box(3, 3).height) == (12, 12)
    assert [seq.area(t, 4) for t in (0, 3)] == [16, 64]


def test_a_mask_from_another_sequence_is_a_shape():
    source = moving_boxes()
    template = MaskTemplate.from_sequence(source, object_id=1, frame_index=0)
    assert (template.width, template.height, template.label) == (6, 4, "dog")
    seq = synthesize(
        [
            SyntheticObject(template, Trajectory([(0, (8, 8)), (2, (20, 8))])),
            SyntheticObject(template, (8, 20), 12, 8),
        ],
        width=32,
        height=32,
        num_frames=3,
        fps=8,
    )
    assert seq.objects[0].label == "dog" and seq.area(0, 1) == 24 and seq.area(0, 2) == 96
    assert seq.box(2, 1).x0 - seq.box(0, 1).x0 == 12


@pytest.mark.parametrize(
    ("objects", "kwargs", "field"),
    [
        ([SyntheticObject("circle", (1, 1), 4)], {"width": 0}, "width"),
        ([SyntheticObject("circle", (1, 1), 4)], {"num_frames": 0}, "num_frames"),
        ([SyntheticObject("circle", (1, 1), 4)], {"fps": 0}, "fps"),
        ([], {}, "objects"),
        ([SyntheticObject("star", (1, 1), 4)], {}, "objects[0].shape"),
        ([SyntheticObject("circle", (1, 1), 4), SyntheticObject("circle", (1, 1))], {}, "objects[1].width"),
        ([SyntheticObject("circle", (1, 1), -4)], {}, "objects[0].width"),
        (
            [SyntheticObject("circle", Trajectory([(0, (1, 1)), (8, (5, 5))]), 4)],
            {},
            "objects[0].center.keyframes[1].frame_index",
        ),
        (
            [SyntheticObject("circle", (1, 1), 4, scale=Trajectory([(0, 0.0)]))],
            {},
            "objects[0].scale.keyframes[0].value",
        ),
        (
            [SyntheticObject("circle", (1, 1), 4, rotation=Trajectory([(0, (1, 1))]))],
            {},
            "objects[0].rotation",
        ),
        ([SyntheticObject("circle", "middle", 4)], {}, "objects[0].center"),
    ],
)
def test_bad_synthesis_names_the_field(objects, kwargs, field):
    args = {"width": 16, "height": 16, "num_frames": 4, "fps": 4.0, **kwargs}
    with pytest.raises(FieldError) as error:
        synthesize(objects, **args)
    assert error.value.field == field


def test_bad_templates_name_the_field():
    source = moving_boxes()
    for kwargs, field in [
        ({"object_id": 9, "frame_index": 0}, "object_id"),
        ({"object_id": 1, "frame_index": 99}, "frame_index"),
        ({"object_id": 2, "frame_index": source.num_frames - 1}, "frame_index"),  # the ball is absent there
    ]:
        with pytest.raises(FieldError) as error:
            MaskTemplate.from_sequence(source, **kwargs)
        assert error.value.field == field
