"""Shared by the example-based tests of ``start`` and ``decide``: a small domain and a driver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from coordinator._dsl import Saga
from coordinator.core import (
    CancelTimer,
    Decision,
    Dispatch,
    Effect,
    Input,
    Notify,
    SagaDefinition,
    SagaState,
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

ROOT = Path(__file__).resolve().parents[3]
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


def pay_saga(**kwargs: Any) -> SagaDefinition[Order]:
    s = saga(**kwargs)
    return s.define(
        step(s, "reserve"),
        s.parallel("pay", step(s, "charge"), step(s, "points")),
        step(s, "ship"),
    )


def wait_saga(**wait: Any) -> SagaDefinition[Order]:
    s = saga()
    wait.setdefault("data", Approval)
    wait.setdefault("merge", lambda o, a: msgspec.structs.replace(o, approver=a.by))
    return s.define(step(s, "a"), s.wait_for("approval", **wait), step(s, "b"))


def pivot_saga() -> SagaDefinition[Order]:
    s = saga()
    return s.define(
        step(s, "reserve"),
        step(s, "ship", pivot=True),
        step(s, "email", undo=None),
    )
