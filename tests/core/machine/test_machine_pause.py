"""Example-based tests of the pure state machine: an operator's pause and resume."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from machine_support import (
    DEADLINE_TIMER,
    Order,
    Run,
    at,
    cancelled_timers,
    dispatches,
    pivot_saga,
    saga,
    sent,
    started_timers,
    step,
    wait_saga,
)

from coordinator.core import (
    CancelRequested,
    PauseRequested,
    ResumeRequested,
    Retry,
    RetryRequested,
    SagaDefinition,
    SagaState,
    ServiceRecovered,
)


def two_steps(**kwargs: object) -> SagaDefinition[Order]:
    s = saga(**kwargs)
    return s.define(
        step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=2)),
        step(s, "b", timeout=timedelta(seconds=5)),
    )


def pause(run: Run, t: float, *, hold: bool = False, by: str = "ops") -> None:
    d = run.feed(PauseRequested(by=by, hold_deadline=hold, at=at(t)))
    assert d.changed, d.note
    assert run.state.paused


def test_a_paused_saga_holds_a_reply_and_sends_the_next_step_on_resume() -> None:
    run = Run(two_steps())
    pause(run, 1, by="alice")
    assert "paused by alice" in run.last.note
    d = run.ok("a", t=2)
    assert d.changed  # recorded and kept: a new revision, nothing sent
    assert d.effects == ()
    assert "held until resumed" in d.note
    assert run.status("a") == "dispatched"
    assert len(run.state.held) == 1
    d = run.feed(ResumeRequested(by="bob", at=at(30)))
    assert not run.state.paused
    assert run.state.held == ()
    assert run.status("a") == "succeeded"
    assert sent(d) == ["b"]
    # The command sent on resume is timed from the resume, not from the reply.
    assert started_timers(d) == {"timeout:b:action:1": at(35)}
    assert "resumed by bob; 1 input held while paused" in d.note
    assert d.state.revision == run.decisions[-2].state.revision + 1


def test_a_step_timer_due_while_paused_takes_effect_on_resume() -> None:
    run = Run(two_steps())
    pause(run, 1)
    d = run.fire("timeout:a:action:1", t=6)
    assert d.changed
    assert d.effects == ()
    assert run.status("a") == "dispatched"
    d = run.feed(ResumeRequested(at=at(20)))
    assert run.status("a") == "retrying"
    assert [t for t in started_timers(d) if t.startswith("retry:a:action:2")]


def test_while_paused_duplicates_and_stale_timers_change_nothing() -> None:
    run = Run(two_steps())
    pause(run, 1)
    assert run.ok("a", t=2).changed
    again = run.ok("a", t=3)
    assert not again.changed  # the same reply, already held
    stale = run.fire("timeout:a:action:1", t=7)
    assert not stale.changed  # its attempt is answered (by the held reply)
    run.feed(ResumeRequested(at=at(8)))
    assert [x.step for x in run.all_dispatches] == ["a", "b"]


def test_inputs_held_while_paused_apply_in_the_order_they_came() -> None:
    run = Run(wait_saga())
    run.ok("a", t=1)
    assert run.status("approval") == "waiting"
    pause(run, 2)
    assert run.signal("approval", {"by": "carol"}, t=3).changed
    d = run.feed(ResumeRequested(at=at(4)))
    assert run.state.data.approver == "carol"
    assert sent(d) == ["b"]


def test_a_signal_that_does_not_fit_is_refused_at_once_while_paused() -> None:
    run = Run(wait_saga())
    run.ok("a", t=1)
    pause(run, 2)
    d = run.signal("approval", {"nobody": 1}, t=3)
    assert not d.changed
    assert d.refused
    assert run.state.held == ()


def test_pausing_twice_a_terminal_saga_or_resuming_a_running_one_is_refused() -> None:
    run = Run(two_steps())
    d = run.feed(ResumeRequested(at=at(1)))
    assert (d.changed, d.refused) == (False, "saga is running: it is not paused")
    pause(run, 2, by="alice")
    d = run.feed(PauseRequested(by="bob", at=at(3)))
    assert not d.changed
    assert d.refused.startswith("saga is already paused by alice since")
    run.feed(ResumeRequested(at=at(4)))
    run.ok("a", t=5)
    run.ok("b", t=6)
    assert run.state.status == "completed"
    d = run.feed(PauseRequested(at=at(7)))
    assert (d.changed, d.refused) == (False, "saga is completed: there is nothing to pause")


def test_a_retry_while_paused_is_refused() -> None:
    run = Run(two_steps())
    pause(run, 1)
    d = run.feed(RetryRequested(at=at(2)))
    assert (d.changed, d.refused) == (False, "saga is paused: resume it, then retry")


def test_the_deadline_keeps_running_while_paused_and_applies_on_resume() -> None:
    run = Run(two_steps(deadline=timedelta(seconds=60)))
    pause(run, 1)
    assert cancelled_timers(run.last) == []
    d = run.fire(DEADLINE_TIMER, t=60)
    assert d.changed
    assert run.state.status == "running"  # nothing happens until resume
    d = run.feed(ResumeRequested(at=at(70)))
    assert run.state.status == "compensating"
    assert "deadline" in (run.state.reason or "")


def test_a_held_deadline_is_moved_on_by_the_time_paused() -> None:
    run = Run(two_steps(deadline=timedelta(seconds=60)))
    pause(run, 10, hold=True)
    assert cancelled_timers(run.last) == [DEADLINE_TIMER]
    assert run.state.hold_deadline
    # The poller had taken the old timer just before the pause cancelled it.
    assert not run.fire(DEADLINE_TIMER, t=60).changed
    d = run.feed(ResumeRequested(at=at(100)))
    assert started_timers(d) == {DEADLINE_TIMER: at(150)}
    assert run.state.deadline_at == at(150)
    # A copy of the old timer that fires late changes nothing: the deadline moved.
    assert not run.fire(DEADLINE_TIMER, t=120).changed
    assert run.fire(DEADLINE_TIMER, t=150).changed
    assert run.state.status == "compensating"


def test_a_cancel_while_paused_resumes_and_compensates_what_was_held() -> None:
    run = Run(two_steps())
    pause(run, 1)
    run.ok("a", t=2)  # held: a applied, so it owes its undo
    d = run.feed(CancelRequested(reason="stop", at=at(3)))
    assert d.changed
    assert not run.state.paused
    assert run.state.status == "compensating"
    assert sent(d, "compensation") == ["a"]
    assert sent(d, "action") == []


def test_a_refused_cancel_leaves_the_saga_paused() -> None:
    run = Run(pivot_saga())
    run.ok("reserve", t=1)
    run.ok("ship", t=2)
    pause(run, 3)
    run.ok("email", t=4)  # held
    d = run.feed(CancelRequested(at=at(5)))
    assert not d.changed
    assert d.refused == "saga is past its pivot: it can only go forward now"
    assert run.state.paused
    assert len(run.state.held) == 1


def test_a_held_pivot_success_still_wins_over_a_cancel_while_paused() -> None:
    """The cancel turns the saga back first, then the held reply says the pivot applied:
    there is no way back, as when that reply races a cancel of a running saga."""
    run = Run(pivot_saga())
    run.ok("reserve", t=1)
    pause(run, 2)
    run.ok("ship", t=3)
    d = run.feed(CancelRequested(at=at(4)))
    assert d.changed
    assert run.state.status == "running"
    assert sent(d) == ["email"]
    assert sent(d, "compensation") == []


def test_a_recovery_while_paused_sends_on_resume_through_the_circuit_then() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b"))
    run = Run(defn, down=frozenset({"svc-a"}))
    assert run.status("a") == "awaiting_service"
    pause(run, 1)
    assert run.feed(ServiceRecovered(service="svc-a", at=at(2))).changed
    assert run.all_dispatches == []
    d = run.feed(ResumeRequested(at=at(3), services_down=frozenset({"svc-a"})))
    assert sent(d) == []  # the circuit opened again in the meantime: still parked
    assert run.status("a") == "awaiting_service"
    d = run.feed(ServiceRecovered(service="svc-a", at=at(4)))
    assert sent(d) == ["a"]
    assert [x.attempt for x in dispatches(d)] == [1]


def test_a_state_stored_before_pause_existed_decodes_unpaused() -> None:
    run = Run(two_steps())
    old = msgspec.json.encode(run.state)
    assert b"paused" not in old and b"held" not in old
    pause(run, 1)
    run.ok("a", t=2)
    decoded = msgspec.json.decode(old, type=SagaState[Order])
    assert (decoded.paused, decoded.held) == (False, ())
    # A paused state with held inputs round-trips as it is.
    again = msgspec.json.decode(msgspec.json.encode(run.state), type=SagaState[Order])
    assert again == run.state
