"""Property test: random sequences of store calls on one operation agree with a small reference model, progress
never decreases, and a done operation never changes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from google.protobuf import wrappers_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.serving.operations import (
    InvalidTransitionError,
    OperationStore,
    StaleAttemptError,
    State,
    pack_any,
)

ACTIONS = st.one_of(
    st.tuples(st.just("claim")),
    st.tuples(st.just("progress"), st.floats(min_value=-0.5, max_value=1.5, allow_nan=False)),
    st.tuples(st.just("finish")),
    st.tuples(st.just("fail")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("mark_cancelled")),
    st.tuples(st.just("requeue")),
    st.tuples(st.just("recover")),
    st.tuples(st.just("stale_finish")),
)


@dataclass
class Model:
    state: State = State.QUEUED
    attempts: int = 0
    progress: float = 0.0
    cancel_requested: bool = False


def apply(model: Model, action: tuple) -> bool:
    """Update the model; returns whether the store must accept the call (False: it must raise)."""
    verb = action[0]
    running = model.state is State.RUNNING
    if verb == "claim":
        if model.state is State.QUEUED:
            model.state, model.attempts, model.cancel_requested = State.RUNNING, model.attempts + 1, False
        return True  # an empty queue answers None, not an error
    if verb == "progress":
        if running:
            model.progress = max(model.progress, min(max(action[1], 0.0), 1.0))
        return running
    if verb == "finish":
        if running:
            model.state, model.progress = State.SUCCEEDED, 1.0
        return running
    if verb == "fail":
        ok = model.state in (State.QUEUED, State.RUNNING)
        if ok:
            model.state = State.FAILED
        return ok
    if verb == "cancel":
        if model.state is State.QUEUED:
            model.state = State.CANCELLED
        elif running:
            model.cancel_requested = True
        return True
    if verb == "mark_cancelled":
        if running:
            model.state = State.CANCELLED
        return running
    if verb in ("requeue", "recover"):
        if running:
            model.state = State.CANCELLED if model.cancel_requested else State.QUEUED
        return running or verb == "recover"
    if verb == "stale_finish":
        return False
    raise AssertionError(verb)


def invoke(store: OperationStore, name: str, kind: str, action: tuple, result: bytes) -> None:
    verb = action[0]
    if verb == "recover":
        store.recover()  # earlier examples leave no RUNNING operation behind: this touches only `name`
    elif verb == "claim":
        store.claim_next(kind)
    elif verb == "progress":
        store.update_progress(name, action[1])
    elif verb == "finish":
        store.finish(name, result)
    elif verb == "fail":
        store.fail(name, 13, "boom")
    elif verb == "cancel":
        store.cancel(name)
    elif verb == "mark_cancelled":
        store.mark_cancelled(name)
    elif verb == "requeue":
        store.requeue(name)
    elif verb == "stale_finish":
        store.finish(name, result, attempt=store.get(name).attempts - 1)
    else:
        raise AssertionError(verb)


def test_random_call_sequences_follow_the_model(tmp_path):
    store = OperationStore(tmp_path / "ops.db", max_attempts=None, synchronous="NORMAL")
    counter = itertools.count()
    result = pack_any(wrappers_pb2.StringValue(value="r"))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(ACTIONS, max_size=20))
    def run(actions: list[tuple]) -> None:
        kind = f"prop{next(counter)}.run"
        name = store.create(kind, b"x")[0].name
        model = Model()
        frozen = None
        last_progress = 0.0
        for action in actions:
            verb = action[0]
            accepted = apply(model, action)
            try:
                invoke(store, name, kind, action, result)
            except (InvalidTransitionError, StaleAttemptError):
                assert not accepted, (verb, model)
            else:
                assert accepted, (verb, model)
            op = store.get(name)
            assert (op.state, op.attempts, op.cancel_requested) == (
                model.state,
                model.attempts,
                model.cancel_requested,
            ), (verb, op, model)
            assert op.progress == model.progress
            assert op.progress >= last_progress
            last_progress = op.progress
            if frozen is not None:
                assert op == frozen  # a done operation never changes
            if op.done:
                frozen = op
        if store.get(name).state is State.RUNNING:
            store.fail(name, 13, "end of example")

    try:
        run()
    finally:
        store.close()
