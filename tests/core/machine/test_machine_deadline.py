"""Example-based tests of the pure state machine: the saga deadline."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    DEADLINE_TIMER,
    Run,
    cancelled_timers,
    dispatches,
    pay_saga,
    saga,
    sent,
    step,
)

# -- the saga deadline ---------------------------------------------------------------------


def test_the_saga_deadline_triggers_compensation() -> None:
    run = Run(pay_saga(deadline=timedelta(seconds=60)))
    run.ok("reserve", t=1)
    run.ok("charge", t=2)
    d = run.fire(DEADLINE_TIMER, t=60)
    assert run.state.status == "compensating"
    assert "deadline" in (run.state.reason or "")
    assert dispatches(d) == []  # points is still out
    d = run.ok("points", t=61)
    assert sent(d, "compensation") == ["points"]
    d = run.ok("points", kind="compensation", t=62)
    assert sent(d, "compensation") == ["charge"]
    run.ok("charge", kind="compensation", t=63)
    d = run.ok("reserve", kind="compensation", t=64)
    assert run.state.status == "compensated"
    assert DEADLINE_TIMER in cancelled_timers(d)
    assert run.status("ship") == "abandoned"


def test_the_deadline_after_completion_is_stale() -> None:
    s = saga(deadline=timedelta(seconds=60))
    run = Run(s.define(step(s, "a")))
    run.ok("a")
    assert not run.fire(DEADLINE_TIMER, t=60).changed


def test_the_deadline_while_compensating_changes_nothing() -> None:
    run = Run(pay_saga(deadline=timedelta(seconds=60)))
    run.ok("reserve")
    run.fail("charge", retryable=False)
    assert run.state.status == "compensating"
    assert not run.fire(DEADLINE_TIMER, t=60).changed
