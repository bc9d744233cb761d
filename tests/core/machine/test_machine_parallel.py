"""Example-based tests of the pure state machine: parallel groups."""

from __future__ import annotations

from machine_support import (
    Run,
    at,
    dispatches,
    notified,
    pay_saga,
    saga,
    sent,
    step,
)

from coordinator.core import (
    StepFailed,
    decide,
)

# -- parallel groups -----------------------------------------------------------------------


def test_parallel_fan_out_dispatches_all_branches_at_once_and_fan_in_waits_for_all() -> None:
    run = Run(pay_saga())
    d = run.ok("reserve")
    assert sent(d) == ["charge", "points"]
    assert run.status("charge") == run.status("points") == "dispatched"
    assert sent(run.ok("charge")) == []
    assert run.state.cursor == 1
    assert run.status("ship") == "pending"
    d = run.ok("points")
    assert sent(d) == ["ship"]
    assert run.state.cursor == 2


def test_a_failed_branch_waits_for_the_other_to_settle_before_compensating() -> None:
    run = Run(pay_saga())
    run.ok("reserve")
    d = run.fail("charge", retryable=False)
    assert run.state.status == "compensating"
    assert run.status("charge") == "failed"
    assert run.status("points") == "dispatched"
    assert dispatches(d) == []  # points is still out: nothing is compensated yet
    assert run.status("ship") == "abandoned"

    d = run.ok("points")
    assert run.status("points") == "compensating"
    assert sent(d, "compensation") == ["points"]
    d = run.ok("points", kind="compensation")
    assert sent(d, "compensation") == ["reserve"]
    d = run.ok("reserve", kind="compensation")
    assert run.state.status == "compensated"
    assert notified(d) == ["compensated"]
    assert run.state.reason is not None and "charge" in run.state.reason
    assert "charge" not in [e.step for e in run.all_dispatches if e.kind == "compensation"]


def test_a_failed_branch_while_the_other_fails_too_compensates_only_what_applied() -> None:
    run = Run(pay_saga())
    run.ok("reserve")
    run.fail("charge", retryable=False)
    d = run.fail("points", retryable=True)  # a retryable failure, but the saga is compensating
    assert run.status("points") == "failed"
    assert sent(d, "compensation") == ["reserve"]
    assert not any(e.kind == "action" and e.attempt > 1 for e in run.all_dispatches)


def test_every_changed_decision_has_a_note_for_the_history() -> None:
    """A branch failing while the saga already compensates, another branch still out: the
    decision changes the saga, so the history needs a line for it (it once was empty)."""
    s = saga()
    defn = s.define(s.parallel("g", step(s, "b"), step(s, "c"), step(s, "e")))
    run = Run(defn)
    run.fail("b", retryable=False)
    d = decide(
        defn,
        run.state,
        StepFailed(
            message_id="m",
            step="c",
            kind="action",
            attempt=1,
            error_type="Boom",
            error_message="it broke",
            at=at(2),
        ),
    )
    assert d.changed
    assert d.state.steps["c"].status == "failed"
    assert d.note != ""


def test_compensation_runs_in_reverse_order_of_settling() -> None:
    s = saga()
    defn = s.define(
        step(s, "a"),
        s.parallel("g", step(s, "b"), step(s, "c")),
        step(s, "d"),
    )
    run = Run(defn)
    run.ok("a")
    run.ok("c")  # c settles before b
    run.ok("b")
    assert run.state.settled == ("a", "c", "b")
    run.fail("d", retryable=False)
    order: list[str] = []
    while run.state.status == "compensating":
        [comp] = dispatches(run.last, "compensation")
        order.append(comp.step)
        run.ok(comp.step, kind="compensation")
    assert order == ["b", "c", "a"]
    assert run.state.status == "compensated"
    assert all(run.status(n) == "compensated" for n in "abc")
    assert run.status("d") == "failed"


def test_a_task_failed_step_owes_no_compensation() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b"))
    run = Run(defn)
    run.ok("a")
    run.fail("b", retryable=False)
    assert run.state.steps["b"].owes is False
    assert run.state.steps["b"].status == "failed"
    assert run.state.steps["b"].error == "Boom: it broke"
    assert sent(run.last, "compensation") == ["a"]
    run.ok("a", kind="compensation")
    assert run.state.status == "compensated"
    assert "b" not in run.state.settled


def test_the_first_step_failing_compensates_nothing() -> None:
    s = saga()
    defn = s.define(step(s, "a"), step(s, "b"))
    run = Run(defn)
    d = run.fail("a", retryable=False)
    assert run.state.status == "compensated"
    assert dispatches(d) == []
    assert notified(d) == ["compensated"]
