import pytest
import torch

from recsys.rerank.simulator.optimum import brute_force_optimum
from recsys.rerank.simulator.stream import DriftingStream
from recsys.rerank.simulator.world import with_taste


def test_batches_are_random_access_deterministic_in_seed_and_step():
    stream = DriftingStream(seed=0, batch_size=8, phase_length=10)
    later_first = stream.batch(25)
    assert torch.equal(stream.batch(3).batch.features, stream.batch(3).batch.features)
    assert torch.equal(
        later_first.batch.features,
        DriftingStream(seed=0, batch_size=8, phase_length=10).batch(25).batch.features,
    )
    assert not torch.equal(stream.batch(3).batch.features, stream.batch(4).batch.features)
    assert not torch.equal(
        stream.batch(3).batch.features, DriftingStream(seed=1, batch_size=8).batch(3).batch.features
    )
    with pytest.raises(ValueError, match="step"):
        stream.batch(-1)


def test_phases_and_drift_points():
    stream = DriftingStream(seed=0, batch_size=4, phase_length=10)
    assert [stream.phase(s) for s in (0, 9, 10, 25)] == [0, 0, 1, 2]
    assert [s for s in range(31) if stream.is_drift_point(s)] == [10, 20, 30]
    assert torch.equal(stream.taste(0), torch.ones(8))  # phase 0: the stationary world
    taste = stream.taste(10)
    assert (taste == 2.0).sum() == 2 and (taste == 0.3).sum() == 2 and (taste == 1.0).sum() == 4
    assert torch.equal(stream.taste(10), stream.taste(19))  # abrupt, then constant within the phase
    assert not torch.equal(stream.taste(10), stream.taste(20))
    assert torch.equal(stream.batch(12).user.taste[0], taste)


def test_slow_drift_within_a_phase():
    stream = DriftingStream(seed=0, batch_size=4, phase_length=10, within_phase_drift=0.5)
    start, end = stream.taste(10), stream.taste(19)
    assert not torch.allclose(start, end)
    assert ((end / start).log().abs() <= 0.5 * 0.9 * 6).all()  # bounded by the rate (|d| < 6)


def test_drift_changes_the_optimal_pages():
    stream = DriftingStream(seed=3, batch_size=200, phase_length=5)
    before = stream.batch(4)
    after = stream.batch(5)
    assert stream.is_drift_point(5)
    # the same requests under the old and the new taste: only the hidden user differs
    old_best, _ = brute_force_optimum(with_taste(after, before.user.taste))
    new_best, _ = brute_force_optimum(after)
    changed = (old_best != new_best).any(dim=1).float().mean()
    assert changed > 0.2
