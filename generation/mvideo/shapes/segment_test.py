import subprocess
import sys

import numpy as np

from generation.mvideo.shapes.segment import COLOR_NAMES, foreground, nearest_color, video_mask_iou
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
