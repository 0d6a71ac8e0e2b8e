import numpy as np
import pytest

from recsys.data.world import (
    WORLD_PRESETS,
    generate_world,
    make_population,
    parse_index,
    read_world,
    write_world,
)

TINY = WORLD_PRESETS["tiny"]


@pytest.fixture(scope="module")
def world():
    return generate_world(TINY)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate_world(TINY)
    for name, column in world.impressions.items():
        np.testing.assert_array_equal(column, again.impressions[name])
    other = generate_world(TINY.scaled(seed=1))
    assert other.num_impressions != world.num_impressions or not np.array_equal(
        other.impressions["user"], world.impressions["user"]
    )


def test_gifts_are_rare_and_heavy_tailed(world):
    summary = generate_world(WORLD_PRESETS["default"].scaled(days=4)).summary()
    assert 0.008 < summary["gift_rate"] < 0.03
    assert summary["users_never_gifting"] > 0.5  # most users rarely gift
    assert summary["gifts_by_top_10pct_users"] > 0.3  # ... and a few gift a lot


def test_impressions_are_in_time_order_and_inside_their_broadcast(world):
    imp = world.impressions
    assert np.all(np.diff(imp["timestamp"]) >= 0)
    rows = world.stream_rows(imp["stream_id"])
    np.testing.assert_array_equal(world.streams["stream_id"][rows], imp["stream_id"])
    np.testing.assert_array_equal(world.streams["author"][rows], imp["author"])
    assert imp["second"].min() >= TINY.max_segment_seconds - 1
    assert imp["second"].max() < TINY.broadcast_seconds
    assert np.all(imp["watch_seconds"] <= TINY.broadcast_seconds - imp["second"])
    pairs = imp["stream_id"] * (TINY.num_users + 1) + imp["user"]
    assert len(np.unique(pairs)) == len(pairs)  # one impression per user and broadcast


def test_gifts_follow_the_current_scene_and_the_community(world):
    """The planted signal: gift rate rises with the match between the user's taste and the content on screen
    (decoded from the visual tokens), and is higher inside the streamer's community."""
    population, imp = world.population, world.impressions
    content = world.streams["content"][world.stream_rows(imp["stream_id"]), imp["second"]]  # [N, 3, D]
    decoded = content[:, 0] @ np.linalg.pinv(population.projections["visual"]).T  # [N, k]
    match = np.einsum("nk,nk->n", population.user_taste[imp["user"]], decoded)
    high = match > np.quantile(match, 0.75)
    low = match < np.quantile(match, 0.25)
    assert imp["gifted"][high].mean() > 2 * imp["gifted"][low].mean()
    same = population.user_community[imp["user"]] == population.author_community[imp["author"]]
    assert imp["gifted"][same].mean() > imp["gifted"][~same].mean()


def test_visual_tokens_carry_more_of_the_scene_than_comments():
    population = make_population(TINY)
    energy = {name: np.linalg.norm(matrix) for name, matrix in population.projections.items()}
    assert energy["visual"] > energy["speech"] and energy["visual"] > energy["comments"]
    assert TINY.noise_visual < TINY.noise_speech < TINY.noise_comments


def test_temporal_split_has_no_shared_day():
    days = TINY.split_days()
    assert days["graph"].start == 0 and days["graph"].stop == days["train"].start
    assert days["train"].stop == days["validation"].start and days["validation"].stop == days["test"].start
    assert days["test"].stop == TINY.days
    with pytest.raises(ValueError, match="too few"):
        TINY.scaled(days=2).split_days()


def test_written_world_reads_back_identical(world, tmp_path):
    write_world(TINY, tmp_path / "world", progress=False)
    assert (tmp_path / "world" / "impressions" / "day=000" / "part-0.parquet").exists()
    back = read_world(tmp_path / "world")
    np.testing.assert_array_equal(back.streams["content"], world.streams["content"])
    for name in ("user", "author", "stream_id", "second", "gifted"):
        np.testing.assert_array_equal(back.impressions[name], world.impressions[name])


def test_public_ids_parse_to_indices_and_unknowns_to_zero():
    assert parse_index("u17", "u", 100) == 17
    assert parse_index("u0", "u", 100) == 0
    assert parse_index("u101", "u", 100) == 0
    assert parse_index("a17", "u", 100) == 0
    assert parse_index("u-3", "u", 100) == 0
    assert parse_index("", "u", 100) == 0
