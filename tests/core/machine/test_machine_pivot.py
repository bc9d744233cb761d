"""Example-based tests of the pure state machine: cancel and the pivot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from machine_support import (
    DEADLINE_TIMER,
    Run,
    at,
    dispatches,
    notified,
    pay_saga,
    pivot_saga,
    saga,
    sent,
    started_timers,
    step,
)

from coordinator.core import (
    CancelRequested,
    Retry,
)

# -- cancel and the pivot ------------------------------------------------------------------


def test_cancel_requested_compensates_and_ends_cancelled() -> None:
    run = Run(pay_saga())
    run.ok("reserve", t=1)
    run.ok("charge", t=2)
    d = run.feed(CancelRequested(at=at(3)))
    assert run.state.status == "compensating"
    assert run.state.outcome == "cancelled"
    assert dispatches(d) == []  # points is out
    run.ok("points", t=4)
    for name in ("points", "charge", "reserve"):
        assert sent(run.last, "compensation") == [name]
        run.ok(name, kind="compensation", t=5)
    assert run.state.status == "cancelled"
    assert notified(run.last) == ["cancelled"]
    assert run.state.reason == "cancelled by request"
    assert not run.feed(CancelRequested(at=at(6))).changed


def test_cancel_while_compensating_is_ignored() -> None:
    run = Run(pay_saga())
    run.ok("reserve")
    run.fail("charge", retryable=False)
    assert not run.feed(CancelRequested(at=at(2))).changed
    assert run.state.outcome == "compensated"


def test_cancel_after_the_pivot_is_refused() -> None:
    run = Run(pivot_saga())
    run.ok("reserve")
    run.ok("ship")
    d = run.feed(CancelRequested(at=at(2)))
    assert not d.changed
    assert "pivot" in d.note
    assert run.state.status == "running"


def test_failure_after_the_pivot_ends_failed_without_compensation() -> None:
    run = Run(pivot_saga())
    run.ok("reserve")
    run.ok("ship")
    d = run.fail("email", retryable=False)
    assert run.state.status == "failed"
    assert dispatches(d) == []
    assert notified(d) == ["failed"]
    assert "after the pivot" in (run.state.reason or "")
    assert run.status("reserve") == "succeeded"
    assert not any(e.kind == "compensation" for e in run.all_dispatches)


def test_the_pivot_failing_compensates_the_steps_before_it() -> None:
    run = Run(pivot_saga())
    run.ok("reserve")
    d = run.fail("ship", retryable=False)
    assert run.state.status == "compensating"
    assert sent(d, "compensation") == ["reserve"]


def test_the_pivot_timing_out_ends_failed_because_it_may_have_applied() -> None:
    s = saga()
    defn = s.define(step(s, "reserve"), step(s, "ship", pivot=True, timeout=timedelta(seconds=5)))
    run = Run(defn)
    run.ok("reserve")
    d = run.fire("timeout:ship:action:1", t=6)
    assert run.state.status == "failed"
    assert run.status("ship") == "timed_out"
    assert dispatches(d) == []
    assert "outcome unknown" in (run.state.reason or "")


def test_a_pivot_that_succeeds_after_a_cancel_is_not_followed_by_compensation() -> None:
    """A cancel while the pivot is out turns the saga to compensating, but when the pivot
    then succeeds there is no way back: nothing is compensated and the saga goes forward."""
    run = Run(pivot_saga())
    run.ok("reserve", t=1)
    assert run.status("ship") == "dispatched"
    run.feed(CancelRequested(at=at(2)))
    assert run.state.status == "compensating"
    assert run.status("email") == "abandoned"
    d = run.ok("ship", t=3)
    assert run.status("ship") == "succeeded"
    assert sent(d, "compensation") == []
    assert run.state.status == "running"
    assert run.state.outcome is None
    assert sent(d) == ["email"]
    run.ok("email", t=4)
    assert run.state.status == "completed"
    assert not any(e.kind == "compensation" for e in run.all_dispatches)


def test_a_pivot_that_succeeds_after_the_deadline_goes_forward_and_takes_kept_signals() -> None:
    s = saga(deadline=timedelta(seconds=60))
    defn = s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True),
        s.wait_for("delivered", timeout=timedelta(seconds=30)),
        step(s, "email", undo=None),
    )
    run = Run(defn)
    run.ok("reserve", t=1)
    run.fire(DEADLINE_TIMER, t=60)
    assert run.state.status == "compensating"
    d = run.signal("delivered", t=61)
    assert d.changed  # kept: the pivot may still send the saga forward
    d = run.ok("ship", t=62)
    assert run.state.status == "running"
    assert run.status("delivered") == "succeeded"
    assert sent(d) == ["email"]
    assert sent(d, "compensation") == []


def test_the_deadline_after_the_pivot_no_longer_applies() -> None:
    s = saga(deadline=timedelta(seconds=60))
    defn = s.define(step(s, "reserve"), step(s, "ship", pivot=True), step(s, "email", undo=None))
    run = Run(defn)
    run.ok("reserve", t=1)
    run.ok("ship", t=2)
    d = run.fire(DEADLINE_TIMER, t=60)
    assert not d.changed
    assert run.state.status == "running"
    run.ok("email", t=61)
    assert run.state.status == "completed"


def test_the_pivot_timing_out_after_a_cancel_ends_failed() -> None:
    s = saga()
    defn = s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True, timeout=timedelta(seconds=5), retry=Retry(attempts=3)),
    )
    run = Run(defn)
    run.ok("reserve", t=1)
    run.feed(CancelRequested(at=at(2)))
    # The pivot may have applied: it keeps being retried, nothing is compensated meanwhile.
    d = run.fire("timeout:ship:action:1", t=6)
    assert run.status("ship") == "retrying"
    assert sent(d, "compensation") == []
    retry_2 = next(iter(started_timers(d)))
    d = run.fire(retry_2, t=10)
    assert [x.attempt for x in dispatches(d)] == [2]
    run.fire("timeout:ship:action:2", t=15)
    run.fire(next(iter(started_timers(run.last))), t=20)
    d = run.fire("timeout:ship:action:3", t=25)
    # Attempts exhausted, outcome still unknown, no undo: an operator must look.
    assert run.state.status == "failed"
    assert sent(d, "compensation") == []
    assert "outcome unknown" in (run.state.reason or "")


@pytest.mark.parametrize("trigger", ["cancel", "deadline"])
def test_a_pivot_in_backoff_after_a_timeout_is_not_given_up_by_a_cancel(trigger: str) -> None:
    """The pivot's first attempt timed out (it may have shipped) and its retry waits for the
    backoff timer when a cancel, or the deadline, comes: the steps before it must not be
    undone while its outcome is unknown, and its late success must not be ignored (the
    saga once compensated them, ended ``cancelled`` and dropped the pivot's success)."""
    s = saga(deadline=timedelta(seconds=20))
    slow_retry = Retry(attempts=3, backoff=timedelta(seconds=30), jitter=0.0)
    defn = s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True, timeout=timedelta(seconds=5), retry=slow_retry),
        step(s, "email", undo=None),
    )
    run = Run(defn)
    run.ok("reserve", t=1)
    d = run.fire("timeout:ship:action:1", t=6)
    assert run.status("ship") == "retrying"
    assert run.state.steps["ship"].unknown
    assert started_timers(d) == {"retry:ship:action:2": at(36)}  # after the deadline
    if trigger == "cancel":
        d = run.feed(CancelRequested(at=at(8)))
    else:
        d = run.fire(DEADLINE_TIMER, t=20)
    assert sent(d, "compensation") == [], "undoing reserve while the pivot may have applied"
    # Whatever the machine does instead, the pivot that did apply must not be ignored.
    late = run.ok("ship", 1, t=21)
    # README: "If the pivot succeeds, the saga goes forward."
    assert late.changed, late.note
    assert run.state.steps["ship"].status == "succeeded"
    assert run.state.status == "running"
    assert sent(late, "action") == ["email"]
