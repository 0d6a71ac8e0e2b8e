import numpy as np

from generation.mvideo.shapes.motions import HELD_OUT_FAMILIES, MOTION_FAMILIES
from generation.mvideo.shapes.world import ShapesWorld, shape_mask

SEEDS = range(12)


def _paths(motion: str, **world_kwargs) -> list[tuple[ShapesWorld, np.ndarray, float]]:
    """(world, (T, 2) centres, radius) of every object of a few held-out samples of `motion`."""
    world = ShapesWorld(motion=motion, **world_kwargs)
    out = []
    for seed in SEEDS:
        for obj in world.sample(seed, "eval").objects:
            out.append((world, np.array(obj.centers), obj.radius))
    return out


def _inside(world: ShapesWorld, centers: np.ndarray, radius: float) -> np.ndarray:
    """(T,) bool: the centre is at least one radius inside the frame (the object is not cut by an edge)."""
    x, y = centers[:, 0], centers[:, 1]
    eps = 1e-6
    return (
        (x >= radius - eps)
        & (x <= world.width - radius + eps)
        & (y >= radius - eps)
        & (y <= world.height - radius + eps)
    )


def test_the_table_names_the_issue_families_and_only_bounce_is_trained_on():
    assert set(HELD_OUT_FAMILIES) == {
        "fast",
        "zigzag",
        "circular",
        "crossing",
        "entering",
        "stop_reverse",
        "small",
        "large",
    }
    assert not MOTION_FAMILIES["bounce"].held_out


def test_fast_objects_move_6_to_12_px_per_frame_at_32_px_and_scale_with_the_frame():
    for size in (32, 64):
        scale = size / 32
        steps = []
        for world, centers, radius in _paths("fast", height=size, width=size):
            inside = _inside(world, centers, radius + 1e-3)
            free = inside[:-1] & inside[1:]  # steps that did not hit an edge (a bounce clips the step)
            lengths = np.linalg.norm(np.diff(centers, axis=0), axis=1)
            steps.extend(lengths[free].tolist())
        assert len(steps) > 10
        assert 6 * scale - 1e-6 <= min(steps) and max(steps) <= 12 * scale + 1e-6


def test_zigzag_swings_back_and_forth_across_a_drift():
    for _, centers, _ in _paths("zigzag"):
        velocity = np.diff(centers, axis=0)
        drift = velocity.mean(axis=0)
        across = velocity @ np.array([-drift[1], drift[0]]) / np.linalg.norm(drift)
        changes = np.sum(np.sign(across[1:]) != np.sign(across[:-1]))
        assert changes >= 2  # 7 steps, flipping every 2: at least two turns
        assert np.abs(across).min() > 2.0  # a real swing, 2.5-3.8 px minus the drift's share


def test_circular_paths_keep_a_constant_distance_to_a_centre():
    for world, centers, radius in _paths("circular"):
        # Least-squares circle fit (Kasa): x^2 + y^2 = 2 a x + 2 b y + c
        x, y = centers[:, 0], centers[:, 1]
        design = np.stack([2 * x, 2 * y, np.ones_like(x)], axis=1)
        (a, b, c), *_ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
        distance = np.hypot(x - a, y - b)
        assert np.ptp(distance) < 1e-6 and 5 - 1e-6 <= distance[0] <= 10 + 1e-6
        assert _inside(world, centers, radius).all()
        angles = np.unwrap(np.arctan2(y - b, x - a))
        assert np.ptp(np.diff(angles)) < 1e-6  # constant angular speed


def test_crossing_paths_meet_mid_clip_and_start_apart():
    world = ShapesWorld(motion="crossing")
    met = 0
    for seed in SEEDS:
        sample = world.sample(seed, "eval")
        a, b = (np.array(o.centers) for o in sample.objects[:2])
        distance = np.linalg.norm(a - b, axis=1)
        mid = (world.num_frames - 1) / 2
        lo, hi = int(np.floor(mid)), int(np.ceil(mid))
        np.testing.assert_allclose((a[lo] + a[hi]) / 2, (b[lo] + b[hi]) / 2, atol=1e-9)  # same point at t=mid
        first, second = (shape_mask(o.shape, o.centers[lo], o.radius, 32, 32) for o in sample.objects[:2])
        assert (first & second).any()  # the masks overlap mid-clip
        met += distance[0] > distance[lo] and distance[-1] > distance[hi]
        for obj in sample.objects[:2]:
            assert _inside(world, np.array(obj.centers), obj.radius).all()
    assert met >= len(SEEDS) - 2  # a few pairs barely move (both near the edge): they still meet mid-clip


def test_entering_objects_start_cut_by_an_edge_and_end_inside():
    world = ShapesWorld(motion="entering")
    for seed in SEEDS:
        sample = world.sample(seed, "eval")
        for obj in sample.objects:
            centers = np.array(obj.centers)
            inside = _inside(world, centers, obj.radius)
            assert not inside[0] and inside[-1]
            # at most about half of the object is in the first frame (its centre is on or beyond the edge)
            first, last = (shape_mask(obj.shape, obj.centers[t], obj.radius, 32, 32) for t in (0, -1))
            assert first.sum() <= 0.6 * last.sum() + 2


def test_stop_reverse_has_a_still_stretch_and_then_goes_back():
    for world, centers, radius in _paths("stop_reverse"):
        velocity = np.diff(centers, axis=0)
        speed = np.linalg.norm(velocity, axis=1)
        assert (speed < 1e-9).any() and speed.max() > 2 - 1e-6
        along = velocity @ velocity[0]
        assert along[0] > 0 and along.min() < 0  # sign change: it goes back
        first_still = int(np.argmax(speed < 1e-9))
        assert (along[:first_still] > 0).all() and (along[first_still:] <= 1e-9).all()
        assert _inside(world, centers, radius).all()


def test_small_and_large_radii():
    small = [r for _, _, r in _paths("small")]
    large = [r for _, _, r in _paths("large")]
    assert 2 <= min(small) and max(small) <= 3
    assert 8 <= min(large) and max(large) <= 11
    np.testing.assert_allclose([r for _, _, r in _paths("large", height=64, width=64)], 2 * np.array(large))
