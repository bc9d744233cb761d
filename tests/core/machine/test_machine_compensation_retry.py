"""Example-based tests of the pure state machine: compensation failures and operator retry."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    Order,
    Run,
    at,
    boom,
    cancelled_timers,
    dispatches,
    notified,
    saga,
    sent,
    started_timers,
    step,
)

from coordinator.core import (
    CancelRequested,
    Retry,
    RetryRequested,
    SagaDefinition,
)

# -- compensation failures and operator retry ----------------------------------------------


def comp_saga(attempts: int = 2) -> SagaDefinition[Order]:
    s = saga(compensation_retry=Retry(attempts=attempts, backoff=timedelta(seconds=1)))
    return s.define(step(s, "a"), step(s, "b"))


def test_compensation_failure_retries_with_backoff_then_fails_the_saga() -> None:
    run = Run(comp_saga(attempts=2))
    run.ok("a", t=1)
    run.fail("b", retryable=False, t=2)
    assert sent(run.last, "compensation") == ["a"]
    d = run.fail("a", 1, kind="compensation", t=3)
    assert run.state.status == "compensating"
    assert run.status("a") == "compensating"
    assert dispatches(d) == []
    delay = Retry(attempts=2, backoff=timedelta(seconds=1)).delay(1, seed="o1:a:undo")
    assert started_timers(d) == {"retry:a:compensation:2": at(3) + delay}
    d = run.fire("retry:a:compensation:2", t=5)
    [comp] = dispatches(d)
    assert (comp.kind, comp.attempt, comp.idempotency_key) == (
        "compensation",
        2,
        "o1:a:compensation",
    )
    d = run.fail("a", 2, kind="compensation", t=6)
    assert run.state.status == "failed"
    assert run.status("a") == "compensation_failed"
    assert run.state.steps["a"].error == "Boom: it broke"
    assert notified(d) == ["failed"]
    assert run.state.reason is not None
    assert "compensation of 'a' failed" in run.state.reason
    assert run.state.terminal


def test_retry_requested_on_a_failed_saga_resumes_compensation() -> None:
    run = Run(comp_saga(attempts=1))
    run.ok("a")
    run.fail("b", retryable=False)
    run.fail("a", 1, kind="compensation")
    assert run.state.status == "failed"
    assert not run.feed(CancelRequested(at=at(2))).changed
    d = run.feed(RetryRequested(at=at(10)))
    assert d.changed
    assert run.state.status == "compensating"
    assert run.state.finished_at is None
    assert sent(d, "compensation") == ["a"]
    assert run.status("a") == "compensating"
    [comp] = dispatches(d)
    run.ok("a", comp.attempt, kind="compensation", t=11)
    assert run.state.status == "compensated"
    assert run.status("a") == "compensated"


def test_retry_requested_sends_a_fresh_message_id() -> None:
    """An operator retry numbers compensation attempts on: every command has its own
    ``message_id`` (unique per attempt by contract) and its own timer names."""
    run = Run(comp_saga(attempts=1))
    run.ok("a")
    run.fail("b", retryable=False)
    run.fail("a", 1, kind="compensation")
    before = {e.message_id for e in run.all_dispatches}
    d = run.feed(RetryRequested(at=at(10)))
    [comp] = dispatches(d)
    assert comp.message_id not in before
    assert comp.attempt == 2


def test_an_operator_retry_gets_a_full_round_of_compensation_attempts() -> None:
    run = Run(comp_saga(attempts=2))
    run.ok("a")
    run.fail("b", retryable=False)
    run.fail("a", 1, kind="compensation", t=2)
    run.fire("retry:a:compensation:2", t=4)
    run.fail("a", 2, kind="compensation", t=5)
    assert run.state.status == "failed"
    run.feed(RetryRequested(at=at(10)))
    assert [x.attempt for x in dispatches(run.last)] == [3]
    d = run.fail("a", 3, kind="compensation", t=11)
    assert run.state.status == "compensating"  # a new round: one retry left
    assert "retry:a:compensation:4" in started_timers(d)
    d = run.fire("retry:a:compensation:4", t=13)
    assert [x.attempt for x in dispatches(d)] == [4]
    run.fail("a", 4, kind="compensation", t=14)
    assert run.state.status == "failed"
    assert [x.attempt for x in run.all_dispatches if x.kind == "compensation"] == [1, 2, 3, 4]
    assert len({x.message_id for x in run.all_dispatches}) == len(run.all_dispatches)


def test_retry_requested_on_a_running_or_completed_saga_is_ignored() -> None:
    run = Run(comp_saga())
    assert not run.feed(RetryRequested(at=at(1))).changed
    run.ok("a")
    run.ok("b")
    assert run.state.status == "completed"
    assert not run.feed(RetryRequested(at=at(2))).changed


def test_compensation_timeout_counts_as_a_failed_attempt() -> None:
    s = saga(compensation_retry=Retry(attempts=2))
    defn = s.define(step(s, "a", timeout=timedelta(seconds=5)), step(s, "b"))
    run = Run(defn)
    run.ok("a", t=1)
    run.fail("b", retryable=False, t=2)
    d = run.fire("timeout:a:compensation:1", t=7)
    assert d.changed
    assert "retry:a:compensation:2" in started_timers(d)
    d = run.fire("retry:a:compensation:2", t=9)
    assert [x.attempt for x in dispatches(d)] == [2]
    # The late reply of the first attempt is a success: accepted.
    d = run.ok("a", 1, kind="compensation", t=10)
    assert d.changed
    assert run.state.status == "compensated"


def test_a_duplicate_compensation_failure_during_backoff_changes_nothing() -> None:
    """A compensation in backoff ignores a duplicate of the failure that put it there."""
    run = Run(comp_saga(attempts=3))
    run.ok("a")
    run.fail("b", retryable=False)
    first = run.fail("a", 1, kind="compensation", t=3)
    assert first.changed
    again = run.fail("a", 1, kind="compensation", t=4)
    assert not again.changed


def test_a_compensation_timeout_racing_its_failure_reply_changes_nothing() -> None:
    """The timeout of a compensation attempt already answered does not count again."""
    s = saga(compensation_retry=Retry(attempts=3))
    defn = s.define(step(s, "a", timeout=timedelta(seconds=5)), step(s, "b"))
    run = Run(defn)
    run.ok("a", t=1)
    run.fail("b", retryable=False, t=2)
    d = run.fail("a", 1, kind="compensation", t=3)
    assert "timeout:a:compensation:1" in cancelled_timers(d)
    # The timer poller had already picked the timer up before the cancel was committed.
    assert not run.fire("timeout:a:compensation:1", t=7).changed


def test_undo_that_raises_fails_the_saga() -> None:
    s = saga()
    defn = s.define(step(s, "a", undo=boom), step(s, "b"))
    run = Run(defn)
    run.ok("a")
    d = run.fail("b", retryable=False)
    assert run.state.status == "failed"
    assert run.status("a") == "compensation_failed"
    assert "RuntimeError: boom" in (run.state.reason or "")
    assert notified(d) == ["failed"]


def test_an_operator_retry_resumes_where_it_stopped_and_undoes_nothing_twice() -> None:
    s = saga(compensation_retry=Retry(attempts=1))
    defn = s.define(step(s, "a"), step(s, "b"), step(s, "c"), step(s, "d"))
    run = Run(defn)
    run.ok("a", t=1)
    run.ok("b", t=2)
    run.ok("c", t=3)
    run.fail("d", retryable=False, t=4)
    run.ok("c", kind="compensation", t=5)
    run.fail("b", kind="compensation", t=6)  # exhausted: a is never reached
    assert run.state.status == "failed"
    assert (run.status("a"), run.status("b"), run.status("c")) == (
        "succeeded",
        "compensation_failed",
        "compensated",
    )
    d = run.feed(RetryRequested(at=at(10)))
    assert sent(d) == ["b"]
    assert not run.feed(RetryRequested(at=at(10))).changed  # a second retry: nothing to do
    d = run.ok("b", 2, kind="compensation", t=11)
    assert sent(d) == ["a"]
    run.ok("a", kind="compensation", t=12)
    assert run.state.status == "compensated"
    undos = [x.step for x in run.all_dispatches if x.kind == "compensation"]
    assert undos == ["c", "b", "b", "a"]  # c once, b's failed attempt and its retry, a once


def test_a_signal_refused_by_a_failed_saga_is_refused_again_after_a_retry() -> None:
    # A copy of a message must get the answer the first one got. The retry revives
    # the compensation, but with no pivot out nothing will read the signal.
    s = saga(compensation_retry=Retry(attempts=1, backoff=timedelta(seconds=1)))
    defn = s.define(step(s, "a"), step(s, "b"), s.wait_for("approval"))
    run = Run(defn)
    run.ok("a", t=1)
    run.fail("b", retryable=False, t=2)
    run.fail("a", 1, kind="compensation", t=3)
    assert run.state.status == "failed"
    first = run.signal("approval", t=4, mid="sig-1")
    assert not first.changed and "takes no more signals" in first.refused
    assert run.feed(RetryRequested(at=at(5))).changed
    assert run.state.status == "compensating"
    again = run.signal("approval", t=6, mid="sig-1")
    assert not again.changed, again.note
    assert "too late" in again.refused and "'approval' is abandoned" in again.refused
    assert run.state.signals == {}
