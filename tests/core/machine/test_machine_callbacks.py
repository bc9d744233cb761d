"""Example-based tests of the pure state machine: callbacks that raise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from machine_support import (
    DEADLINE_TIMER,
    Approval,
    Order,
    Reserved,
    Run,
    at,
    boom,
    notified,
    pay_saga,
    pivot_saga,
    saga,
    sent,
    step,
    wait_saga,
)

from coordinator.core import (
    CancelRequested,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
)

# -- callbacks that raise ------------------------------------------------------------------


def test_send_that_raises_fails_the_saga_without_raising() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b", send=boom))
    run = Run(defn)
    d = run.ok("a")
    assert run.state.status == "compensating"
    assert run.status("b") == "failed"
    assert run.state.reason == "send= of 'b' raised RuntimeError: boom"
    assert sent(d, "compensation") == ["a"]


def test_send_that_raises_at_start() -> None:
    s = saga()
    defn = s.define(step(s, "a", send=boom))
    run = Run(defn)
    assert run.state.status == "compensated"
    assert "RuntimeError: boom" in (run.state.reason or "")
    assert notified(run.last) == ["started", "compensated"]


def test_when_that_raises_fails_the_saga_without_raising() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b", when=boom))
    run = Run(defn)
    d = run.ok("a")
    assert run.state.status == "compensating"
    assert run.status("b") == "abandoned"
    assert run.state.reason == "when= of 'b' raised RuntimeError: boom"
    assert sent(d, "compensation") == ["a"]


def test_merge_that_raises_fails_the_saga_and_the_step_is_compensated() -> None:
    s = saga()
    defn = s.define(step(s, "a", result=Reserved, merge=boom), step(s, "b"))
    run = Run(defn)
    d = run.ok("a", result={"hold_id": "H"})
    assert run.state.status == "compensating"
    assert "result of 'a' could not be applied: RuntimeError: boom" in (run.state.reason or "")
    assert sent(d, "compensation") == ["a"]  # it did apply at the participant


def test_a_result_that_does_not_decode_fails_the_saga() -> None:
    s = saga()
    defn = s.define(step(s, "a", result=Reserved, merge=lambda o, r: o))
    run = Run(defn)
    run.ok("a", result={"hold_id": 42})
    assert run.state.status == "compensating"
    assert "ValidationError" in (run.state.reason or "")


@pytest.mark.parametrize("which", ["accept", "merge"])
def test_signal_callbacks_that_raise_fail_the_saga(which: str) -> None:
    run = Run(wait_saga(**{which: boom}))
    run.ok("a")
    d = run.signal("approval", {"by": "x"})
    assert run.state.status == "compensating"
    assert run.status("approval") == "failed"
    assert "RuntimeError: boom" in (run.state.reason or "")
    assert sent(d, "compensation") == ["a"]


@pytest.mark.parametrize("data", [{"by": 3}, {"by": "x", "ok": "yes"}, {}])
def test_a_signal_whose_data_does_not_fit_is_refused_and_the_wait_goes_on(
    data: dict[str, object],
) -> None:
    # Until issue 10 the decode error inside merge= compensated the whole saga.
    run = Run(wait_saga(timeout=timedelta(minutes=1)))
    run.ok("a")
    before = run.state
    d = run.signal("approval", data, mid="bad")
    assert not d.changed and d.effects == () and d.state is before
    assert "does not fit Approval" in d.refused
    assert run.status("approval") == "waiting"
    assert "bad" not in run.state.seen_signals
    d = run.signal("approval", {"by": "fay"}, mid="good")
    assert d.changed and d.refused == ""
    assert run.status("approval") == "succeeded"
    assert run.state.data.approver == "fay"


def test_a_signal_for_a_later_wait_is_checked_when_it_arrives() -> None:
    run = Run(wait_saga())
    d = run.signal("approval", {"ok": "yes"}, mid="early-bad")
    assert not d.changed and "does not fit" in d.refused
    assert run.state.signals == {}
    d = run.signal("approval", {"by": "gus"}, mid="early-good")
    assert d.changed and run.state.signals == {"approval": {"by": "gus"}}
    run.ok("a")
    assert run.status("approval") == "succeeded"


def test_a_signal_without_a_data_type_takes_any_object() -> None:
    s = saga()
    run = Run(s.define(step(s, "a"), s.wait_for("approval"), step(s, "b")))
    run.ok("a")
    d = run.signal("approval", {"anything": [1, 2]})
    assert d.changed and sent(d) == ["b"]


def test_a_second_signal_after_its_wait_took_one_is_recorded_not_refused() -> None:
    # A sender that retried under a new message id: not kept (no wait could use it),
    # and not refused either (the saga has what it asked for).
    run = Run(wait_saga())
    run.ok("a")
    run.signal("approval", {"by": "hal"}, mid="first")
    d = run.signal("approval", {"by": "ida"}, mid="second")
    assert (d.changed, d.refused) == (False, "")
    assert "already took one" in d.note
    assert run.state.signals == {}
    assert run.state.data.approver == "hal"


def test_a_second_signal_sent_again_while_compensating_is_still_ignored() -> None:
    # The same message id must get the same answer: ignored while running, and
    # ignored again once the saga compensates, not kept as news.
    run = Run(wait_saga())
    run.ok("a")
    run.signal("approval", {"by": "hal"}, mid="first")
    run.signal("approval", {"by": "ida"}, mid="second")
    run.fail("b", retryable=False)
    assert run.state.status == "compensating"
    d = run.signal("approval", {"by": "ida"}, mid="second")
    assert (d.changed, d.refused) == (False, "")
    assert "already took one" in d.note
    assert run.state.signals == {}


def test_a_signal_after_its_wait_was_skipped_is_refused() -> None:
    run = Run(wait_saga(when=lambda o: o.total > 100), Order(id="o1", total=5))
    run.ok("a")
    assert run.status("approval") == "skipped"
    d = run.signal("approval", {"by": "ida"})
    assert not d.changed
    assert "too late" in d.refused and "skipped" in d.refused


def test_a_bad_signal_while_compensating_is_refused_a_good_one_kept() -> None:
    s = saga(deadline=timedelta(seconds=60))
    defn = s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True),
        s.wait_for("delivered", data=Approval),
        step(s, "email", undo=None),
    )
    run = Run(defn)
    run.ok("reserve", t=1)
    run.fire(DEADLINE_TIMER, t=60)
    assert run.state.status == "compensating"
    d = run.signal("delivered", {"by": 1}, t=61, mid="bad")
    assert not d.changed and "does not fit" in d.refused
    d = run.signal("delivered", {"by": "jo"}, t=61, mid="good")
    assert d.changed and d.refused == ""
    run.ok("ship", t=62)
    assert run.status("delivered") == "succeeded"


@pytest.mark.parametrize("status", ["completed", "compensated"])
def test_signal_cancel_and_retry_to_a_finished_saga_are_refused(status: str) -> None:
    run = Run(wait_saga())
    if status == "completed":
        run.ok("a")
        run.signal("approval", {"by": "kim"})
        run.ok("b")
    else:
        run.fail("a", retryable=False)
    assert run.state.status == status
    for inp in (
        SignalReceived(message_id="late", name="approval", data={"by": "x"}, at=at(9)),
        CancelRequested(at=at(9)),
        RetryRequested(at=at(9)),
    ):
        d = run.feed(inp)
        assert not d.changed
        assert d.refused.startswith(f"saga is {status}"), d.refused


def test_a_cancel_while_compensating_is_refused_with_the_reason() -> None:
    run = Run(pay_saga())
    run.ok("reserve")
    run.fail("charge", retryable=False)
    d = run.feed(CancelRequested(at=at(2)))
    assert not d.changed
    assert d.refused.startswith("saga is already compensating")
    assert run.state.outcome == "compensated"


def test_a_cancel_past_the_pivot_and_a_retry_with_nothing_failed_are_refused() -> None:
    run = Run(pivot_saga())
    run.ok("reserve")
    d = run.feed(RetryRequested(at=at(1)))
    assert not d.changed and "no failed compensation" in d.refused
    run.ok("ship")
    d = run.feed(CancelRequested(at=at(2)))
    assert not d.changed and "past its pivot" in d.refused


def test_replies_and_timers_that_do_not_apply_are_recorded_not_refused() -> None:
    run = Run(pay_saga(deadline=timedelta(seconds=60)))
    run.ok("reserve")
    before = run.state
    for d in (
        run.ok("nope"),
        run.fail("nope"),
        run.ok("reserve"),  # duplicate
        run.ok("reserve", attempt=7),
        run.ok("reserve", kind="compensation"),
        run.fire("timeout:nope:action:1"),
        run.fire("bogus"),
        run.feed(ServiceRecovered(service="svc-none", at=at(2))),
    ):
        assert (d.changed, d.refused, d.state) == (False, "", before)
    assert "unknown step 'nope'" in run.decisions[-8].note
