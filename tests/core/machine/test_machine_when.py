"""Example-based tests of the pure state machine: when=."""

from __future__ import annotations

from machine_support import (
    Order,
    Run,
    dispatches,
    notified,
    saga,
    sent,
    step,
)

# -- when= ---------------------------------------------------------------------------------


def test_when_false_skips_and_a_skipped_step_is_never_compensated() -> None:
    s = saga()
    defn = s.define(
        step(s, "reserve"),
        step(s, "express", when=lambda o: o.express),
        step(s, "charge"),
    )
    run = Run(defn, Order(id="o1", express=False))
    d = run.ok("reserve")
    assert run.status("express") == "skipped"
    assert sent(d) == ["charge"]
    run.fail("charge", retryable=False)
    assert run.state.status == "compensating"
    assert sent(run.last, "compensation") == ["reserve"]
    run.ok("reserve", kind="compensation")
    assert run.state.status == "compensated"
    assert run.status("express") == "skipped"
    assert "express" not in [e.step for e in run.all_dispatches]


def test_when_true_runs_the_step() -> None:
    s = saga()
    defn = s.define(step(s, "reserve"), step(s, "express", when=lambda o: o.express))
    run = Run(defn, Order(id="o1", express=True))
    assert sent(run.ok("reserve")) == ["express"]


def test_a_skipped_last_step_completes_the_saga() -> None:
    s = saga()
    defn = s.define(step(s, "express", when=lambda o: False))
    run = Run(defn)
    assert run.state.status == "completed"
    assert dispatches(run.last) == []
    assert notified(run.last) == ["started", "completed"]
