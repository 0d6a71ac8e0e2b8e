import subprocess
import sys

import numpy as np

from generation.mvideo.shapes.segment import (
    COLOR_NAMES,
    background_noise,
    dilate,
    foreground,
    frame_iou,
    nearest_color,
    video_mask_iou,
)
from generation.mvideo.shapes.world import COLORS, ShapesWorld


def test_foreground_ignores_gradient_backgrounds_and_finds_objects():
    world = ShapesWorld(gradient_probability=1.0, gradient_amplitude=24.0)
    sample = world.sample(3)
    background = (sample.background / 255).astype(np.float32)
    assert not foreground(background).any()
    np.testing.assert_array_equal(foreground(sample.video.astype(np.float32) / 255), sample.id_maps > 0)


def test_video_mask_iou_is_one_on_ground_truth_and_drops_when_objects_move():
    sample = ShapesWorld().sample(5)
    assert video_mask_iou(sample.video, sample.id_maps) == 1.0
    shifted = np.roll(sample.id_maps, 6, axis=2)
    assert video_mask_iou(sample.video, shifted) < 0.7


def test_nearest_color_names_each_palette_colour():
    pixels = np.array(list(COLORS.values()), np.float32) / 255 * 0.95  # slightly darker
    assert [COLOR_NAMES[i] for i in nearest_color(pixels)] == list(COLORS)


def test_segmentation_needs_no_torch():
    # clients (make demo) score videos with it; a fresh interpreter, since other tests load torch here
    probe = "import sys, generation.mvideo.shapes.segment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_background_noise_is_zero_on_clean_backgrounds_and_measures_added_noise():
    world = ShapesWorld(gradient_probability=1.0)
    sample = world.sample(2)
    clean = sample.background.astype(np.float32) / 255  # unrounded plane: exactly fittable
    keep_out = dilate(sample.id_maps > 0, 2)
    assert background_noise(clean, keep_out) < 1e-3
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0.0, 6.0 / 255, clean.shape).astype(np.float32)
    assert 5.5 < background_noise(noisy, keep_out) < 6.5
    # objects outside the kept-out region count as noise; inside it they do not
    assert background_noise(sample.video.astype(np.float32) / 255, keep_out) < 0.5
    assert background_noise(sample.video.astype(np.float32) / 255, np.zeros_like(keep_out)) > 20


def test_dilate_grows_masks_by_a_square_and_frame_iou_averages_frames():
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 4, 4] = True
    grown = dilate(mask, 2)
    assert grown.sum() == 25 and grown[0, 2:7, 2:7].all()
    corner = np.zeros((1, 9, 9), bool)
    corner[0, 0, 8] = True
    assert dilate(corner, 1).sum() == 4
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = b[0, :2] = True  # frame 0: IoU 1
    a[1, :2] = True
    b[1, :1] = True  # frame 1: IoU 0.5; frame 2: both empty, skipped
    assert frame_iou(a, b) == 0.75
    assert frame_iou(a[2:], b[2:]) == 1.0 and frame_iou(a[2:], b[2:], empty=0.0) == 0.0
