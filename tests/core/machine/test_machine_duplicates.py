"""Example-based tests of the pure state machine: duplicates, late replies, terminal sagas."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    DEADLINE_TIMER,
    Run,
    at,
    cancelled_timers,
    dispatches,
    pay_saga,
    saga,
    sent,
    step,
)

from coordinator.core import (
    CancelRequested,
    Input,
    Retry,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
    StepCompleted,
    StepFailed,
    TimerFired,
)

# -- duplicates, late replies, terminal sagas ----------------------------------------------


def test_a_duplicate_reply_changes_nothing() -> None:
    run = Run(pay_saga())
    run.ok("reserve")
    state = run.state
    d = run.ok("reserve")
    assert not d.changed
    assert d.state is state
    assert d.state.revision == state.revision
    assert d.effects == ()
    assert "duplicate" in d.note
    run.fail("charge", retryable=False)
    state = run.state
    d = run.fail("charge", retryable=False)
    assert not d.changed
    assert d.state is state
    run.ok("points")
    run.ok("points", kind="compensation")
    state = run.state
    d = run.ok("points", kind="compensation")
    assert not d.changed
    assert d.state is state


def test_a_reply_for_an_unknown_step_is_ignored() -> None:
    run = Run(pay_saga())
    d = run.ok("nope")
    assert not d.changed
    assert "unknown step" in d.note
    assert not run.fail("nope").changed


def test_late_success_after_the_step_failed_makes_it_owe_compensation() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b"), step(s, "c"))
    run = Run(defn)
    run.ok("a", t=1)
    run.fail("b", retryable=False, t=2)
    assert run.state.status == "compensating"
    assert sent(run.last, "compensation") == ["a"]
    # A reordered success for b: it did apply after all.
    d = run.ok("b", t=3)
    assert d.changed
    assert run.state.steps["b"].owes
    assert "compensation owed" in d.note
    assert dispatches(d) == []  # one compensation at a time: a is still being undone
    d = run.ok("a", kind="compensation", t=4)
    assert sent(d, "compensation") == ["b"]
    run.ok("b", kind="compensation", t=5)
    assert run.state.status == "compensated"
    assert run.status("b") == "compensated"


def test_late_success_of_a_step_abandoned_in_backoff_makes_it_owe_compensation() -> None:
    s = saga()
    defn = s.define(
        step(s, "a"), s.parallel("g", step(s, "b", retry=Retry(attempts=2)), step(s, "c"))
    )
    run = Run(defn)
    run.ok("a")
    run.fail("b", 1)  # retryable: b waits for its retry timer
    d = run.fail("c", retryable=False)
    assert run.status("b") == "abandoned"
    assert "retry:b:action:2" in cancelled_timers(d)
    d = run.ok("b", 1)
    assert run.state.steps["b"].owes
    run.ok("a", kind="compensation")
    assert sent(run.last, "compensation") == ["b"]


def test_any_input_on_a_terminal_saga_changes_nothing() -> None:
    s = saga(deadline=timedelta(minutes=1))
    defn = s.define(step(s, "a"), s.wait_for("approval"), step(s, "b"))
    run = Run(defn)
    run.fail("a", retryable=False)
    assert run.state.status == "compensated"
    state = run.state
    inputs: list[Input] = [
        StepCompleted(message_id="m", step="a", kind="action", attempt=1, at=at(2)),
        StepFailed(
            message_id="m",
            step="b",
            kind="action",
            attempt=1,
            error_type="X",
            error_message="",
            at=at(2),
        ),
        StepCompleted(message_id="m", step="a", kind="compensation", attempt=1, at=at(2)),
        TimerFired(timer=DEADLINE_TIMER, at=at(60)),
        TimerFired(timer="timeout:a:action:1", at=at(60)),
        SignalReceived(message_id="s1", name="approval", at=at(3)),
        CancelRequested(at=at(3)),
        ServiceRecovered(service="svc-a", at=at(3)),
        RetryRequested(at=at(3)),
    ]
    for inp in inputs:
        d = run.feed(inp)
        assert not d.changed, inp
        assert d.state is state
        assert d.effects == ()


def test_a_late_success_counts_only_for_an_attempt_that_was_sent() -> None:
    """A success after the step failed is taken (it applied after all: its undo is owed),
    but only for an attempt the coordinator sent: any other answers no command of ours,
    however it got past the dedupe (a forged reply, or a copy whose dedupe id expired)."""
    s = saga()
    retry = Retry(attempts=2, backoff=timedelta(seconds=1), jitter=0.0)
    run = Run(s.define(step(s, "reserve"), step(s, "charge", retry=retry)))
    run.ok("reserve")
    run.fail("charge", 1, t=2)
    run.fire("retry:charge:action:2", t=3)
    run.fail("charge", 2, t=4)
    assert run.status("charge") == "failed"
    state = run.state
    for never_sent in (0, 3, 7):
        d = run.ok("charge", never_sent, t=5)
        assert not d.changed and d.state is state, never_sent
        assert "ignored" in d.note
    late = run.ok("charge", 2, t=6)
    assert late.changed and run.status("charge") == "succeeded"
