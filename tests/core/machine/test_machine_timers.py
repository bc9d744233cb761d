"""Example-based tests of the pure state machine: timers."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from machine_support import (
    DEADLINE_TIMER,
    Order,
    Run,
    at,
    pay_saga,
    saga,
    step,
    wait_saga,
)

from coordinator.core import (
    Effect,
    Retry,
    SagaState,
    Start,
    StepCompleted,
    TimerFired,
    decide,
    start,
)
from coordinator.core._timers import TimerKey
from coordinator.core._working import _Working

# -- timers --------------------------------------------------------------------------------


def test_stale_timers_are_ignored() -> None:
    s = saga()
    defn = s.define(
        step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=2)),
        s.wait_for("approval", timeout=timedelta(seconds=30)),
        step(s, "b", timeout=timedelta(seconds=5)),
    )
    run = Run(defn)
    run.ok("a", t=1)
    for timer in (
        "timeout:a:action:1",  # answered
        "retry:a:action:2",  # never scheduled
        "timeout:a:action:7",
        "timeout:a:compensation:1",
        "retry:a:compensation:2",
        "timeout:b:action:1",  # b not sent yet
        "timeout:nope:action:1",
        "timeout:a:action:x",
        "garbage",
        "wait:nope",
    ):
        d = run.fire(timer, t=6)
        assert not d.changed, timer
    run.signal("approval", t=7)
    assert not run.fire("wait:approval", t=31).changed


def test_revision_grows_by_exactly_one_per_changed_decision() -> None:
    run = Run(pay_saga())
    changes = [
        run.ok("reserve"),
        run.ok("reserve"),  # duplicate
        run.ok("charge"),
        run.fire("garbage"),
        run.ok("points"),
        run.ok("ship"),
        run.ok("ship"),
    ]
    assert [c.changed for c in changes] == [True, False, True, False, True, True, False]
    assert [c.state.revision for c in changes] == [2, 2, 3, 3, 4, 5, 5]


def test_decide_does_not_mutate_its_input_state() -> None:
    run = Run(pay_saga())
    before = run.state
    snapshot = msgspec.json.encode(before)
    run.ok("reserve")
    run.fail("charge", retryable=False)
    assert msgspec.json.encode(before) == snapshot


def test_state_round_trips_through_json() -> None:
    run = Run(wait_saga(timeout=timedelta(seconds=30)))
    run.signal("approval", {"by": "z"}, t=0.5)
    encoded = msgspec.json.encode(run.state)
    decoded = msgspec.json.decode(encoded, type=SagaState[Order])
    assert decoded == run.state
    d = decide(
        run.defn,
        decoded,
        StepCompleted(message_id="m", step="a", kind="action", attempt=1, at=at(1)),
    )
    assert d.state.data.approver == "z"


def test_the_same_inputs_give_the_same_decisions() -> None:
    def play() -> list[tuple[bytes, tuple[Effect, ...]]]:
        run = Run(pay_saga(deadline=timedelta(minutes=1)))
        run.ok("reserve")
        run.fail("charge", 1)
        run.ok("points")
        run.fire(DEADLINE_TIMER, t=60)
        return [(msgspec.json.encode(d.state), d.effects) for d in run.decisions]

    first, second = play(), play()
    assert [s for s, _ in first] == [s for s, _ in second]
    assert [[(type(e), getattr(e, "timer", None)) for e in eff] for _, eff in first] == [
        [(type(e), getattr(e, "timer", None)) for e in eff] for _, eff in second
    ]


def test_timer_names_keep_their_stored_format() -> None:
    # Sagas in flight hold timers under these names across an upgrade: they never change.
    assert TimerKey.deadline().name == "deadline"
    assert TimerKey.wait("approval").name == "wait:approval"
    assert TimerKey.timeout("b", "action", 1).name == "timeout:b:action:1"
    assert TimerKey.retry("b", "compensation", 3).name == "retry:b:compensation:3"
    for name in ("deadline", "wait:approval", "timeout:b:action:1", "retry:b:compensation:3"):
        key = TimerKey.parse(name)
        assert key is not None and key.name == name
    assert TimerKey.parse("retry:b:action:x") is None
    assert TimerKey.parse("later:b:action:1") is None


def test_a_step_status_change_the_table_does_not_allow_is_a_core_bug() -> None:
    s = saga()
    defn = s.define(step(s, "a"))
    first = start(defn, Start(saga_id="s1", data=Order(id="o1"), at=at(0)))
    w = _Working(defn, first.state, TimerFired(timer="x", at=at(1)))
    with pytest.raises(RuntimeError, match="core bug"):
        w.set_step("a", status="compensated")
