"""Example-based tests of the pure state machine: ``start`` and ``decide``, one path at a time."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from coordinator._dsl import Saga
from coordinator.core import (
    CancelRequested,
    CancelTimer,
    Decision,
    Dispatch,
    Effect,
    Input,
    Notify,
    Retry,
    RetryRequested,
    SagaDefinition,
    SagaState,
    ServiceRecovered,
    SignalReceived,
    Start,
    StartTimer,
    StepCompleted,
    StepFailed,
    TimerFired,
    decide,
    start,
)
from coordinator.core._timers import TimerKey

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

DEADLINE_TIMER = TimerKey.deadline().name


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- a small domain ------------------------------------------------------------------------


class Order(msgspec.Struct, frozen=True):
    id: str
    total: int = 10
    express: bool = True
    hold: str | None = None
    approver: str | None = None


class Reserve(msgspec.Struct):
    order_id: str


class Release(msgspec.Struct):
    order_id: str


class Reserved(msgspec.Struct):
    hold_id: str


class Approval(msgspec.Struct):
    by: str
    ok: bool = True


def reserve(o: Order) -> Reserve:
    return Reserve(order_id=o.id)


def release(o: Order) -> Release:
    return Release(order_id=o.id)


def saga(**kwargs: Any) -> Saga[Order]:
    return Saga("order", data=Order, **kwargs)


def step(s: Saga[Order], name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("service", f"svc-{name}")
    kwargs.setdefault("send", reserve)
    if not kwargs.get("pivot") and "undo" not in kwargs:
        kwargs["undo"] = release
    elif kwargs.get("undo") is None:
        kwargs.pop("undo", None)
    return s.step(name, **kwargs)


def boom(*_: object) -> Any:
    raise RuntimeError("boom")


# -- a driver that checks the revision rule on every input ---------------------------------


class Run:
    """One saga instance fed input by input; every decision is checked and kept."""

    def __init__(
        self,
        defn: SagaDefinition[Order],
        data: Order | None = None,
        *,
        saga_id: str = "o1",
        down: frozenset[str] = frozenset(),
    ) -> None:
        self.defn = defn
        self.saga_id = saga_id
        first = start(
            defn,
            Start(saga_id=saga_id, data=data or Order(id=saga_id), at=T0, services_down=down),
        )
        assert first.changed
        assert first.state.revision == 1
        self.state: SagaState[Order] = first.state
        self.last: Decision[Order] = first
        self.decisions = [first]

    def feed(self, inp: Input) -> Decision[Order]:
        before = self.state
        d = decide(self.defn, before, inp)
        if d.changed:
            assert d.state.revision == before.revision + 1
            assert d.state.updated_at == inp.at
            assert d.refused == ""
        else:
            assert d.state is before
            assert d.effects == ()
        assert d.note
        self.state = d.state
        self.last = d
        self.decisions.append(d)
        return d

    # Replies ---------------------------------------------------------------------

    def ok(
        self,
        name: str,
        attempt: int = 1,
        *,
        kind: str = "action",
        t: float = 1,
        result: dict[str, object] | None = None,
        down: frozenset[str] = frozenset(),
    ) -> Decision[Order]:
        return self.feed(
            StepCompleted(
                message_id=f"reply:{name}:{kind}:{attempt}",
                step=name,
                kind=kind,  # type: ignore[arg-type]
                attempt=attempt,
                result=result or {},
                at=at(t),
                services_down=down,
            )
        )

    def fail(
        self,
        name: str,
        attempt: int = 1,
        *,
        kind: str = "action",
        t: float = 1,
        error_type: str = "Boom",
        retryable: bool = True,
        down: frozenset[str] = frozenset(),
    ) -> Decision[Order]:
        return self.feed(
            StepFailed(
                message_id=f"failure:{name}:{kind}:{attempt}",
                step=name,
                kind=kind,  # type: ignore[arg-type]
                attempt=attempt,
                error_type=error_type,
                error_message="it broke",
                retryable=retryable,
                at=at(t),
                services_down=down,
            )
        )

    def fire(self, timer: str, t: float = 1, down: frozenset[str] = frozenset()) -> Decision[Order]:
        return self.feed(TimerFired(timer=timer, at=at(t), services_down=down))

    def signal(
        self, name: str, data: dict[str, object] | None = None, *, t: float = 1, mid: str = ""
    ) -> Decision[Order]:
        return self.feed(
            SignalReceived(message_id=mid or f"sig:{name}", name=name, data=data or {}, at=at(t))
        )

    # Looking at it ---------------------------------------------------------------

    def status(self, name: str) -> str:
        return self.state.steps[name].status

    @property
    def all_dispatches(self) -> list[Dispatch]:
        return [e for d in self.decisions for e in d.effects if isinstance(e, Dispatch)]


def dispatches(d: Decision[Order], kind: str | None = None) -> list[Dispatch]:
    return [e for e in d.effects if isinstance(e, Dispatch) and (kind is None or e.kind == kind)]


def sent(d: Decision[Order], kind: str | None = None) -> list[str]:
    return [e.step for e in dispatches(d, kind)]


def started_timers(d: Decision[Order]) -> dict[str, datetime]:
    return {e.timer: e.due for e in d.effects if isinstance(e, StartTimer)}


def cancelled_timers(d: Decision[Order]) -> list[str]:
    return [e.timer for e in d.effects if isinstance(e, CancelTimer)]


def notified(d: Decision[Order]) -> list[str]:
    return [e.event for e in d.effects if isinstance(e, Notify)]


def of_type(effects: tuple[Effect, ...], kind: type[Any]) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


# -- happy path ----------------------------------------------------------------------------


def test_happy_path_through_a_sequential_saga() -> None:
    s = saga()
    defn = s.define(
        step(s, "reserve", timeout=timedelta(seconds=10)),
        step(s, "charge"),
        step(s, "ship"),
    )
    run = Run(defn)
    first = run.last
    assert notified(first) == ["started"]
    assert run.state.status == "running"
    [d] = dispatches(first)
    assert d.message_id == "o1:reserve:action:1"
    assert d.idempotency_key == "o1:reserve:action"
    assert (d.step, d.kind, d.attempt, d.service, d.command) == (
        "reserve",
        "action",
        1,
        "svc-reserve",
        "Reserve",
    )
    assert msgspec.json.decode(d.payload) == {"order_id": "o1"}
    assert d.deadline == at(10)
    assert started_timers(first) == {"timeout:reserve:action:1": at(10)}
    assert run.status("reserve") == "dispatched"
    assert run.status("charge") == "pending"

    d2 = run.ok("reserve", t=2)
    assert cancelled_timers(d2) == ["timeout:reserve:action:1"]
    assert sent(d2) == ["charge"]
    assert dispatches(d2)[0].deadline is None
    assert run.status("reserve") == "succeeded"
    assert run.state.steps["reserve"].owes
    assert run.state.cursor == 1

    assert sent(run.ok("charge", t=3)) == ["ship"]
    done = run.ok("ship", t=4)
    assert run.state.status == "completed"
    assert run.state.terminal
    assert run.state.finished_at == at(4)
    assert notified(done) == ["completed"]
    assert dispatches(done) == []
    assert run.state.settled == ("reserve", "charge", "ship")
    assert all(st.status == "succeeded" for st in run.state.steps.values())
    assert [d.state.revision for d in run.decisions] == [1, 2, 3, 4]


def test_start_with_a_deadline_schedules_it_and_completion_cancels_it() -> None:
    s = saga(deadline=timedelta(minutes=5))
    defn = s.define(step(s, "reserve"))
    run = Run(defn)
    assert started_timers(run.last) == {DEADLINE_TIMER: at(300)}
    assert run.state.deadline_at == at(300)
    done = run.ok("reserve")
    assert DEADLINE_TIMER in cancelled_timers(done)
    assert run.state.status == "completed"


def test_merge_updates_the_data_for_later_steps() -> None:
    s = saga()
    seen: list[Order] = []

    def send_with(o: Order) -> Reserve:
        seen.append(o)
        return Reserve(order_id=o.hold or "none")

    defn = s.define(
        step(
            s,
            "reserve",
            result=Reserved,
            merge=lambda o, r: msgspec.structs.replace(o, hold=r.hold_id),
        ),
        step(s, "charge", send=send_with),
    )
    run = Run(defn)
    d = run.ok("reserve", result={"hold_id": "H1"})
    assert run.state.data.hold == "H1"
    assert msgspec.json.decode(dispatches(d)[0].payload) == {"order_id": "H1"}
    assert seen[-1].hold == "H1"


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


# -- parallel groups -----------------------------------------------------------------------


def pay_saga(**kwargs: Any) -> SagaDefinition[Order]:
    s = saga(**kwargs)
    return s.define(
        step(s, "reserve"),
        s.parallel("pay", step(s, "charge"), step(s, "points")),
        step(s, "ship"),
    )


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


# -- the saga deadline ---------------------------------------------------------------------


def test_the_saga_deadline_triggers_compensation() -> None:
    run = Run(pay_saga(deadline=timedelta(seconds=60)))
    run.ok("reserve", t=1)
    run.ok("charge", t=2)
    d = run.fire(DEADLINE_TIMER, t=60)
    assert run.state.status == "compensating"
    assert "deadline" in (run.state.reason or "")
    assert dispatches(d) == []  # points is still out
    d = run.ok("points", t=61)
    assert sent(d, "compensation") == ["points"]
    d = run.ok("points", kind="compensation", t=62)
    assert sent(d, "compensation") == ["charge"]
    run.ok("charge", kind="compensation", t=63)
    d = run.ok("reserve", kind="compensation", t=64)
    assert run.state.status == "compensated"
    assert DEADLINE_TIMER in cancelled_timers(d)
    assert run.status("ship") == "abandoned"


def test_the_deadline_after_completion_is_stale() -> None:
    s = saga(deadline=timedelta(seconds=60))
    run = Run(s.define(step(s, "a")))
    run.ok("a")
    assert not run.fire(DEADLINE_TIMER, t=60).changed


def test_the_deadline_while_compensating_changes_nothing() -> None:
    run = Run(pay_saga(deadline=timedelta(seconds=60)))
    run.ok("reserve")
    run.fail("charge", retryable=False)
    assert run.state.status == "compensating"
    assert not run.fire(DEADLINE_TIMER, t=60).changed


# -- waits and signals ---------------------------------------------------------------------


def wait_saga(**wait: Any) -> SagaDefinition[Order]:
    s = saga()
    wait.setdefault("data", Approval)
    wait.setdefault("merge", lambda o, a: msgspec.structs.replace(o, approver=a.by))
    return s.define(step(s, "a"), s.wait_for("approval", **wait), step(s, "b"))


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


def pivot_saga() -> SagaDefinition[Order]:
    s = saga()
    return s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True),
        step(s, "email", undo=None),
    )


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
    and the retry meets ``on_unavailable="compensate"``: the step still owes its undo."""
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
    assert sent(run.last, "compensation") == ["b"]


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


# -- timers --------------------------------------------------------------------------------


def test_stale_timers_are_ignored() -> None:
    s = saga()
    defn = s.define(
        step(s, "a", timeout=timedelta(seconds=5), retry=Retry(attempts=2)),
        s.wait_for("approval", timeout=timedelta(seconds=30)),
        step(s, "b", timeout=timedelta(seconds=5)),
    )
    run = Run(defn)
    run.ok("a", t=1)
    for timer in (
        "timeout:a:action:1",  # answered
        "retry:a:action:2",  # never scheduled
        "timeout:a:action:7",
        "timeout:a:compensation:1",
        "retry:a:compensation:2",
        "timeout:b:action:1",  # b not sent yet
        "timeout:nope:action:1",
        "timeout:a:action:x",
        "garbage",
        "wait:nope",
    ):
        d = run.fire(timer, t=6)
        assert not d.changed, timer
    run.signal("approval", t=7)
    assert not run.fire("wait:approval", t=31).changed


def test_revision_grows_by_exactly_one_per_changed_decision() -> None:
    run = Run(pay_saga())
    changes = [
        run.ok("reserve"),
        run.ok("reserve"),  # duplicate
        run.ok("charge"),
        run.fire("garbage"),
        run.ok("points"),
        run.ok("ship"),
        run.ok("ship"),
    ]
    assert [c.changed for c in changes] == [True, False, True, False, True, True, False]
    assert [c.state.revision for c in changes] == [2, 2, 3, 3, 4, 5, 5]


def test_decide_does_not_mutate_its_input_state() -> None:
    run = Run(pay_saga())
    before = run.state
    snapshot = msgspec.json.encode(before)
    run.ok("reserve")
    run.fail("charge", retryable=False)
    assert msgspec.json.encode(before) == snapshot


def test_state_round_trips_through_json() -> None:
    run = Run(wait_saga(timeout=timedelta(seconds=30)))
    run.signal("approval", {"by": "z"}, t=0.5)
    encoded = msgspec.json.encode(run.state)
    decoded = msgspec.json.decode(encoded, type=SagaState[Order])
    assert decoded == run.state
    d = decide(
        run.defn,
        decoded,
        StepCompleted(message_id="m", step="a", kind="action", attempt=1, at=at(1)),
    )
    assert d.state.data.approver == "z"


def test_the_same_inputs_give_the_same_decisions() -> None:
    def play() -> list[tuple[bytes, tuple[Effect, ...]]]:
        run = Run(pay_saga(deadline=timedelta(minutes=1)))
        run.ok("reserve")
        run.fail("charge", 1)
        run.ok("points")
        run.fire(DEADLINE_TIMER, t=60)
        return [(msgspec.json.encode(d.state), d.effects) for d in run.decisions]

    first, second = play(), play()
    assert [s for s, _ in first] == [s for s, _ in second]
    assert [[(type(e), getattr(e, "timer", None)) for e in eff] for _, eff in first] == [
        [(type(e), getattr(e, "timer", None)) for e in eff] for _, eff in second
    ]


# -- purity --------------------------------------------------------------------------------

FORBIDDEN = {
    "asyncio",
    "aio_pika",
    "aiormq",
    "redis",
    "opentelemetry",
    "socket",
    "time",
    "random",
    "uuid",
    "threading",
}


def test_the_core_imports_no_io_library() -> None:
    # ``coordinator/__init__`` re-exports the runtime (asyncio and friends), so the package
    # is stubbed: what is measured is what ``coordinator.core`` itself pulls in.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('coordinator')\n"
        f"pkg.__path__ = [{str(ROOT / 'coordinator')!r}]\n"
        "sys.modules['coordinator'] = pkg\n"
        "import coordinator.core\n"
        "assert coordinator.core.decide\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'aio_pika', 'aiormq', 'redis', 'opentelemetry'})\n"
        "print(','.join(bad))\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('coordinator'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    bad, loaded = out.stdout.splitlines()
    assert bad == ""
    assert all(m == "coordinator" or m.startswith("coordinator.core") for m in loaded.split(","))


def test_the_core_source_imports_no_io_module() -> None:
    core = ROOT / "coordinator" / "core"
    files = sorted(core.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert not name.startswith(("coordinator.adapters", "coordinator.runtime")), (
                    f"{path.name} imports {name}"
                )
                assert top != "participants", f"{path.name} imports {name}"


def test_mypy_strict_passes_on_the_core() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mypy"), "--strict", "coordinator/core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
