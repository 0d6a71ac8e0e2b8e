"""Concurrency limiter and probe exemption."""

import pytest

from libs.serving.limits import ConcurrencyLimiter, is_exempt, service_of


def test_limiter_counts_up_to_its_limit():
    limiter = ConcurrencyLimiter(2)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.in_flight == 2
    limiter.release()
    assert limiter.try_acquire()


def test_release_without_acquire_is_a_bug():
    with pytest.raises(RuntimeError):
        ConcurrencyLimiter(1).release()
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)


def test_probes_are_exempt():
    assert service_of("/kmono.rank.v1.RankingService/Rank") == "kmono.rank.v1.RankingService"
    assert is_exempt("/grpc.health.v1.Health/Check")
    assert is_exempt("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert is_exempt("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert not is_exempt("/kmono.rank.v1.RankingService/Rank")
