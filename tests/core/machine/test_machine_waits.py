"""Example-based tests of the pure state machine: waits and signals."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    Order,
    Run,
    at,
    cancelled_timers,
    dispatches,
    sent,
    started_timers,
    wait_saga,
)

from coordinator.core import (
    CancelRequested,
)

# -- waits and signals ---------------------------------------------------------------------


def test_wait_for_and_a_signal_continue_and_merge_the_signal_data() -> None:
    run = Run(wait_saga(timeout=timedelta(minutes=1)))
    d = run.ok("a", t=1)
    assert run.status("approval") == "waiting"
    assert dispatches(d) == []
    assert started_timers(d) == {"wait:approval": at(61)}
    d = run.signal("approval", {"by": "alice"}, t=5)
    assert run.status("approval") == "succeeded"
    assert run.state.data.approver == "alice"
    assert cancelled_timers(d) == ["wait:approval"]
    assert sent(d) == ["b"]
    assert not run.fire("wait:approval", t=61).changed  # stale
    assert not run.signal("approval", {"by": "bob"}, t=6).changed  # duplicate message id
    run.ok("b")
    assert run.state.status == "completed"
    assert "approval" not in run.state.settled


def test_a_signal_before_the_wait_is_kept_and_consumed_when_the_wait_is_reached() -> None:
    run = Run(wait_saga(timeout=timedelta(minutes=1)))
    d = run.signal("approval", {"by": "carol"}, t=0.5)
    assert d.changed
    assert run.state.signals == {"approval": {"by": "carol"}}
    assert run.status("approval") == "pending"
    d = run.ok("a", t=1)
    assert run.status("approval") == "succeeded"
    assert run.state.data.approver == "carol"
    assert run.state.signals == {}
    assert sent(d) == ["b"]
    assert "wait:approval" not in started_timers(d)


def test_a_signal_with_a_name_no_wait_has_is_refused_and_the_wait_goes_on() -> None:
    # Kept for later until issue 10; no wait could ever take it, so its sender is told.
    run = Run(wait_saga())
    run.ok("a")
    before = run.state
    d = run.signal("other", {"x": 1})
    assert not d.changed
    assert "no wait for signal 'other'" in d.refused and "'approval'" in d.refused
    assert d.state is before and d.effects == ()
    assert run.status("approval") == "waiting"
    assert run.state.signals == {}


def test_a_rejected_signal_compensates() -> None:
    run = Run(wait_saga(accept=lambda o, a: a.ok))
    run.ok("a")
    d = run.signal("approval", {"by": "dave", "ok": False})
    assert run.status("approval") == "failed"
    assert run.state.status == "compensating"
    assert "rejected" in (run.state.reason or "")
    assert run.state.data.approver is None
    assert sent(d, "compensation") == ["a"]
    run.ok("a", kind="compensation")
    assert run.state.status == "compensated"


def test_an_accepted_signal_continues() -> None:
    run = Run(wait_saga(accept=lambda o, a: a.ok))
    run.ok("a")
    d = run.signal("approval", {"by": "erin", "ok": True})
    assert sent(d) == ["b"]
    assert run.state.data.approver == "erin"


def test_wait_timeout_with_compensate() -> None:
    run = Run(wait_saga(timeout=timedelta(seconds=30), on_timeout="compensate"))
    run.ok("a", t=1)
    d = run.fire("wait:approval", t=31)
    assert run.status("approval") == "timed_out"
    assert run.state.status == "compensating"
    assert sent(d, "compensation") == ["a"]
    assert "approval" not in run.state.settled
    run.ok("a", kind="compensation", t=32)
    assert run.state.status == "compensated"
    # A signal after the end changes nothing.
    assert not run.signal("approval", {"by": "late"}, t=40).changed


def test_wait_timeout_with_continue() -> None:
    run = Run(wait_saga(timeout=timedelta(seconds=30), on_timeout="continue"))
    run.ok("a", t=1)
    d = run.fire("wait:approval", t=31)
    assert run.status("approval") == "skipped"
    assert run.state.status == "running"
    assert sent(d) == ["b"]
    run.ok("b", t=32)
    assert run.state.status == "completed"


def test_a_wait_whose_when_is_false_is_skipped() -> None:
    run = Run(wait_saga(when=lambda o: o.total > 100), Order(id="o1", total=5))
    d = run.ok("a")
    assert run.status("approval") == "skipped"
    assert sent(d) == ["b"]


def test_a_saga_that_ends_waiting_is_cancelled_cleanly() -> None:
    run = Run(wait_saga(timeout=timedelta(seconds=30)))
    run.ok("a")
    d = run.feed(CancelRequested(at=at(2), reason="customer changed their mind"))
    assert run.status("approval") == "abandoned"
    assert "wait:approval" in cancelled_timers(d)
    assert sent(d, "compensation") == ["a"]
    run.ok("a", kind="compensation", t=3)
    assert run.state.status == "cancelled"
    assert run.state.reason == "customer changed their mind"
