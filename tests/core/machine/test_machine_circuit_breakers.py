"""Example-based tests of the pure state machine: circuit breakers."""

from __future__ import annotations

from datetime import timedelta

from machine_support import (
    Run,
    at,
    dispatches,
    saga,
    sent,
    step,
)

from coordinator.core import (
    CancelRequested,
    Retry,
    ServiceRecovered,
)

# -- circuit breakers ----------------------------------------------------------------------


def test_on_unavailable_wait_parks_the_step_and_recovery_dispatches_it() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b", service="payments", on_unavailable="wait"))
    run = Run(defn)
    d = run.ok("a", down=frozenset({"payments"}))
    assert run.status("b") == "awaiting_service"
    assert dispatches(d) == []
    assert run.state.status == "running"
    # Another service recovering changes nothing.
    assert not run.feed(ServiceRecovered(service="inventory", at=at(2))).changed
    d = run.feed(ServiceRecovered(service="payments", at=at(3)))
    assert [(x.step, x.attempt, x.service) for x in dispatches(d)] == [("b", 1, "payments")]
    assert run.status("b") == "dispatched"
    run.ok("b", t=4)
    assert run.state.status == "completed"


def test_a_retry_while_the_circuit_is_open_waits_and_keeps_counting_attempts() -> None:
    s = saga()
    defn = s.define(step(s, "a", service="payments", retry=Retry(attempts=3)))
    run = Run(defn)
    run.fail("a", 1)
    d = run.fire("retry:a:action:2", t=3, down=frozenset({"payments"}))
    assert d.changed
    assert run.status("a") == "awaiting_service"
    assert dispatches(d) == []
    d = run.feed(ServiceRecovered(service="payments", at=at(4)))
    assert [x.attempt for x in dispatches(d)] == [2]


def test_on_unavailable_wait_at_start() -> None:
    s = saga()
    defn = s.define(step(s, "a", service="payments"))
    run = Run(defn, down=frozenset({"payments"}))
    assert run.status("a") == "awaiting_service"
    assert dispatches(run.last) == []


def test_on_unavailable_compensate_compensates() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b", service="payments", on_unavailable="compensate"))
    run = Run(defn)
    d = run.ok("a", down=frozenset({"payments"}))
    assert run.status("b") == "failed"
    assert run.state.status == "compensating"
    assert "unavailable" in (run.state.reason or "")
    assert sent(d) == ["a"]
    assert [x.kind for x in dispatches(d)] == ["compensation"]


def test_an_open_circuit_at_a_retry_after_a_timeout_still_compensates() -> None:
    """Attempt 1 timed out (it may have applied), then the breaker opened (timeouts feed it)
    and the retry meets ``on_unavailable="compensate"``: the step still owes its undo, which
    waits for the service to recover and is sent then."""
    s = saga()
    defn = s.define(
        step(s, "a"),
        step(
            s,
            "b",
            service="payments",
            on_unavailable="compensate",
            timeout=timedelta(seconds=5),
            retry=Retry(attempts=2),
        ),
    )
    run = Run(defn)
    run.ok("a", t=1)
    run.fire("timeout:b:action:1", t=6)
    assert run.state.steps["b"].unknown
    run.fire("retry:b:action:2", t=8, down=frozenset({"payments"}))
    assert run.state.status == "compensating"
    assert run.status("b") == "compensation_awaiting_service"
    assert dispatches(run.last) == []
    assert "b compensation waits: payments is unavailable" in run.last.note
    d = run.feed(ServiceRecovered(service="payments", at=at(9)))
    assert [(x.step, x.kind, x.attempt) for x in dispatches(d)] == [("b", "compensation", 1)]
    assert "payments recovered: resuming b" in d.note


def test_a_compensation_to_an_open_service_waits_and_blocks_the_ones_before_it() -> None:
    s = saga()
    defn = s.define(
        step(s, "a"), step(s, "b", service="payments"), step(s, "c", service="shipping")
    )
    run = Run(defn)
    run.ok("a", t=1)
    run.ok("b", t=2)
    d = run.fail("c", 1, t=3, down=frozenset({"payments"}))
    assert run.state.status == "compensating"
    assert run.status("b") == "compensation_awaiting_service"
    # a's undo waits for b's: compensations run one at a time, in reverse order.
    assert dispatches(d) == []
    d = run.feed(ServiceRecovered(service="payments", at=at(5)))
    assert [(x.step, x.kind) for x in dispatches(d)] == [("b", "compensation")]
    run.ok("b", t=6, kind="compensation")
    assert sent(run.last, "compensation") == ["a"]
    run.ok("a", t=7, kind="compensation")
    assert run.state.status == "compensated"


def test_a_compensation_retry_due_while_the_circuit_is_open_parks_and_keeps_its_number() -> None:
    s = saga()
    defn = s.define(step(s, "a", service="payments"), step(s, "b", service="shipping"))
    run = Run(defn)
    run.ok("a", t=1)
    run.fail("b", 1, t=2)
    run.fail("a", 1, t=3, kind="compensation")
    d = run.fire("retry:a:compensation:2", t=10, down=frozenset({"payments"}))
    assert run.status("a") == "compensation_awaiting_service"
    assert dispatches(d) == []
    # A late success of attempt 1 settles it while parked.
    run.ok("a", t=11, kind="compensation", attempt=1)
    assert run.status("a") == "compensated"
    assert run.state.status == "compensated"


def test_cancel_while_awaiting_service_abandons_the_step() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b", service="payments"))
    run = Run(defn)
    run.ok("a", down=frozenset({"payments"}))
    d = run.feed(CancelRequested(at=at(2)))
    assert run.status("b") == "abandoned"
    assert sent(d, "compensation") == ["a"]
    # Recovery after the saga turned back changes nothing.
    assert not run.feed(ServiceRecovered(service="payments", at=at(3))).changed
