"""Example-based tests of the pure state machine: timeouts and retries."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    Run,
    at,
    cancelled_timers,
    dispatches,
    saga,
    sent,
    started_timers,
    step,
)

from coordinator.core import (
    Retry,
)

# -- timeouts and retries ------------------------------------------------------------------


def test_a_timed_out_step_with_retries_exhausted_is_compensated() -> None:
    s = saga()
    defn = s.define(
        step(s, "a"),
        step(s, "b", timeout=timedelta(seconds=5), retry=Retry(attempts=2)),
    )
    run = Run(defn)
    run.ok("a", t=1)
    d = run.fire("timeout:b:action:1", t=6)
    assert run.status("b") == "retrying"
    assert run.state.steps["b"].unknown
    [(name, due)] = started_timers(d).items()
    assert name == "retry:b:action:2"
    assert due == at(6) + Retry(attempts=2).delay(1, seed="o1:b")
    d = run.fire("retry:b:action:2", t=7)
    assert [(x.step, x.attempt) for x in dispatches(d)] == [("b", 2)]
    d = run.fire("timeout:b:action:2", t=12)
    assert run.status("b") == "compensating"
    assert run.state.settled == ("a", "b")
    assert sent(d, "compensation") == ["b"]
    d = run.ok("b", kind="compensation", t=13)
    assert sent(d, "compensation") == ["a"]
    run.ok("a", kind="compensation", t=14)
    assert run.state.status == "compensated"


def test_a_single_attempt_timing_out_is_compensated() -> None:
    s = saga()
    defn = s.define(step(s, "a", timeout=timedelta(seconds=5)))
    run = Run(defn)
    d = run.fire("timeout:a:action:1", t=5)
    assert run.state.status == "compensating"
    assert run.state.steps["a"].unknown
    [comp] = dispatches(d)
    assert (comp.kind, comp.attempt, comp.message_id) == ("compensation", 1, "o1:a:compensation:1")
    assert comp.idempotency_key == "o1:a:compensation"
    assert comp.command == "Release"
    # The compensation has the step's timeout too.
    assert started_timers(d) == {"timeout:a:compensation:1": at(10)}


def test_an_action_refused_after_its_compensation_began_is_late() -> None:
    """The participant SDK refuses an action whose step's compensation has begun
    (``AlreadyCompensated``, not retryable): the reply changes nothing, during
    the compensation and after it."""
    s = saga()
    defn = s.define(step(s, "a", timeout=timedelta(seconds=5)))
    run = Run(defn)
    run.fire("timeout:a:action:1", t=5)
    assert run.status("a") == "compensating"
    refused = run.fail("a", 1, t=6, error_type="AlreadyCompensated", retryable=False)
    assert not refused.changed
    assert run.status("a") == "compensating"
    assert run.state.steps["a"].unknown, "the compensation is still owed"
    run.ok("a", 1, kind="compensation", t=7)
    assert run.state.status == "compensated"
    assert not run.fail("a", 1, t=8, error_type="AlreadyCompensated", retryable=False).changed
    assert run.state.status == "compensated"


def test_retry_after_a_retryable_failure_keeps_the_idempotency_key() -> None:
    s = saga()
    defn = s.define(step(s, "a", retry=Retry(attempts=3, backoff=timedelta(seconds=2))))
    run = Run(defn)
    first = dispatches(run.last)[0]
    d = run.fail("a", 1, t=1)
    assert run.status("a") == "retrying"
    assert not run.state.steps["a"].unknown
    assert run.state.steps["a"].error == "Boom: it broke"
    assert dispatches(d) == []
    expected_delay = Retry(attempts=3, backoff=timedelta(seconds=2)).delay(1, seed="o1:a")
    assert started_timers(d) == {"retry:a:action:2": at(1) + expected_delay}
    d = run.fire("retry:a:action:2", t=3)
    [second] = dispatches(d)
    assert second.attempt == 2
    assert second.idempotency_key == first.idempotency_key == "o1:a:action"
    assert second.message_id != first.message_id
    assert second.message_id == "o1:a:action:2"
    assert run.status("a") == "dispatched"
    assert run.state.steps["a"].attempt == 2
    run.fail("a", 2, t=4)
    d = run.fire("retry:a:action:3", t=9)
    assert [x.attempt for x in dispatches(d)] == [3]
    run.fail("a", 3, t=10)
    assert run.status("a") == "failed"
    assert run.state.status == "compensated"
    assert [x.attempt for x in run.all_dispatches] == [1, 2, 3]


def test_give_up_on_skips_retries() -> None:
    s = saga()
    defn = s.define(step(s, "a", retry=Retry(attempts=5, give_up_on=["OutOfStock"])))
    run = Run(defn)
    d = run.fail("a", error_type="OutOfStock")
    assert run.status("a") == "failed"
    assert started_timers(d) == {}
    assert run.state.status == "compensated"


def test_non_retryable_failure_skips_retries() -> None:
    s = saga()
    defn = s.define(step(s, "a", retry=Retry(attempts=5)))
    run = Run(defn)
    d = run.fail("a", retryable=False)
    assert run.status("a") == "failed"
    assert started_timers(d) == {}
    assert run.state.status == "compensated"


def test_a_success_after_a_timeout_on_retry_cancels_the_retry() -> None:
    s = saga()
    defn = s.define(
        step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=3)),
        step(s, "b"),
    )
    run = Run(defn)
    run.fire("timeout:a:action:1", t=5)
    assert run.status("a") == "retrying"
    d = run.ok("a", 1, t=6)  # the late reply of attempt 1, before attempt 2 was sent
    assert run.status("a") == "succeeded"
    assert cancelled_timers(d) == ["retry:a:action:2"]
    assert sent(d) == ["b"]
    # The stale retry timer is ignored if it fires anyway.
    d = run.fire("retry:a:action:2", t=7)
    assert not d.changed


def test_late_success_of_attempt_one_while_attempt_two_is_out_is_accepted() -> None:
    s = saga()
    defn = s.define(
        step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=3)),
        step(s, "b"),
    )
    run = Run(defn)
    run.fire("timeout:a:action:1", t=5)
    run.fire("retry:a:action:2", t=6)
    d = run.ok("a", 1, t=7)
    assert d.changed
    assert run.status("a") == "succeeded"
    assert cancelled_timers(d) == ["timeout:a:action:2"]
    assert sent(d) == ["b"]
    # attempt 2 answers too (the participant replays its recorded result): a duplicate.
    assert not run.ok("a", 2, t=8).changed


def test_a_reply_for_an_attempt_not_sent_yet_is_ignored() -> None:
    s = saga()
    defn = s.define(step(s, "a", retry=Retry(attempts=3)))
    run = Run(defn)
    assert not run.ok("a", 2).changed
    assert not run.fail("a", 2).changed
    assert not run.ok("a", 0).changed


def test_a_late_failure_of_an_earlier_attempt_is_ignored() -> None:
    s = saga()
    defn = s.define(step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=3)))
    run = Run(defn)
    run.fire("timeout:a:action:1", t=5)
    assert not run.fail("a", 1, t=5.5).changed  # still in backoff
    run.fire("retry:a:action:2", t=6)
    assert not run.fail("a", 1, t=7).changed  # attempt 2 is out
    assert run.status("a") == "dispatched"
