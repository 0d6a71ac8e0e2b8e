import numpy as np
import pytest

from recsys.data.batches import METAPATHS
from recsys.data.dataset import GTRDataset, WorldFeatures
from recsys.data.world import SPLITS, WORLD_PRESETS, generate_world


@pytest.fixture(scope="module")
def features():
    return WorldFeatures.build(generate_world(WORLD_PRESETS["tiny"]), segment_seconds=5, history=8)


def test_splits_partition_the_impressions_in_time(features):
    splits = {name: GTRDataset.from_world(features, name) for name in SPLITS}
    rows = np.concatenate([d.rows for d in splits.values()])
    assert len(rows) == len(np.unique(rows)) == features.world.num_impressions
    time = features.world.impressions["timestamp"]
    assert time[splits["train"].rows].max() < time[splits["validation"].rows].min()
    assert time[splits["validation"].rows].max() < time[splits["test"].rows].min()


def feature_day(world, row):
    """The impression's own day in training, the first day of its split otherwise."""
    day = world.impressions["timestamp"][row] // 86_400
    for split in ("validation", "test"):
        days = world.config.split_days()[split]
        if day in days:
            return days.start
    return day


@pytest.mark.parametrize("split", ["train", "test"])
def test_history_holds_the_users_impressions_before_the_feature_day_most_recent_first(features, split):
    data = GTRDataset.from_world(features, split)
    imp = features.world.impressions
    day = imp["timestamp"] // 86_400
    index = np.arange(0, len(data), 37)
    batch = data.batch(index)
    for i, row in zip(index, data.rows[index], strict=True):
        earlier = np.flatnonzero((imp["user"] == imp["user"][row]) & (day < feature_day(features.world, row)))
        expected = imp["author"][earlier[::-1][:8]]
        got = batch.history_authors[list(index).index(i)].numpy()
        np.testing.assert_array_equal(got[: len(expected)], expected)
        assert np.all(got[len(expected) :] == 0)


def test_segment_is_the_last_seconds_before_arrival(features):
    data = GTRDataset.from_world(features, "validation")
    batch = data.batch(np.array([0, 5]))
    imp, world = features.world.impressions, features.world
    for position, row in enumerate(data.rows[[0, 5]]):
        stream = world.stream_rows(imp["stream_id"][row : row + 1])[0]
        second = imp["second"][row]
        expected = world.streams["content"][stream, second - 4 : second + 1, 0]
        np.testing.assert_array_equal(batch.visual[position].numpy(), expected)


def test_dense_statistics_count_the_days_before_the_feature_day(features):
    imp = features.world.impressions
    day = imp["timestamp"] // 86_400
    for row in np.random.default_rng(0).choice(len(day), 40, replace=False):
        before = (imp["user"] == imp["user"][row]) & (day < feature_day(features.world, row))
        assert features.user_dense[row, 0] == np.float32(np.log1p(before.sum()))
        assert features.user_dense[row, 1] == np.float32(np.log1p(imp["gifted"][before].sum()))


def test_neighbours_are_rows_of_the_snapshot_arrays(features):
    world = features.world
    tables = {
        name: np.arange((world.config.num_users + 1) * 2).reshape(-1, 2)
        if name.startswith("u")
        else np.arange((world.config.num_authors + 1) * 2).reshape(-1, 2) + 10_000
        for name in METAPATHS
    }
    data = GTRDataset.from_world(features, "train", neighbours=tables)
    batch = data.batch(np.arange(4))
    users = features.world.impressions["user"][data.rows[:4]]
    np.testing.assert_array_equal(batch.neighbours["u2a2u"].numpy(), tables["u2a2u"][users])
    authors = features.world.impressions["author"][data.rows[:4]]
    np.testing.assert_array_equal(batch.neighbours["a2a"].numpy(), tables["a2a"][authors])


def test_segment_longer_than_the_world_allows_is_refused():
    with pytest.raises(ValueError, match="segment_seconds"):
        WorldFeatures.build(generate_world(WORLD_PRESETS["tiny"]), segment_seconds=100)
