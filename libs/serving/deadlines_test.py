"""Deadline context: scoping, nesting, isolation between tasks and threads."""

import asyncio
import time

from libs.serving.deadlines import current_deadline, deadline_scope, remaining_seconds
from libs.serving.testing import run_async


def test_no_deadline_outside_a_scope():
    assert current_deadline() is None
    assert remaining_seconds() is None


def test_scope_sets_and_restores():
    deadline = time.monotonic() + 5
    with deadline_scope(deadline) as effective:
        assert effective == deadline == current_deadline()
        assert 4.9 < remaining_seconds() <= 5
    assert current_deadline() is None


def test_nested_scope_only_shortens():
    outer = time.monotonic() + 5
    with deadline_scope(outer):
        with deadline_scope(outer + 10) as effective:
            assert effective == outer
        with deadline_scope(outer - 4) as effective:
            assert effective == outer - 4
        with deadline_scope(None) as effective:
            assert effective == outer


def test_remaining_is_never_negative():
    with deadline_scope(time.monotonic() - 1):
        assert remaining_seconds() == 0.0


def test_tasks_are_isolated_and_threads_inherit():
    async def rpc(seconds):
        with deadline_scope(time.monotonic() + seconds):
            await asyncio.sleep(0.01)  # let the other task set its own deadline meanwhile
            in_thread = await asyncio.to_thread(remaining_seconds)
            return remaining_seconds(), in_thread

    async def both():
        return await asyncio.gather(rpc(2), rpc(8))

    (short, short_thread), (long, long_thread) = run_async(both())
    assert 1.5 < short <= 2 and 1.5 < short_thread <= 2
    assert 7.5 < long <= 8 and 7.5 < long_thread <= 8
