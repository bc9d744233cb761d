"""Given/expect tests of one saga straight against the pure core.

No transport, no store, no event loop: each call is one ``decide``, so a saga
author's test of every path runs in milliseconds. Time is virtual; ``advance``
fires the saga's timers in order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, final

import msgspec

from contracts import routes
from coordinator.core import (
    CancelRequested,
    CancelTimer,
    Decision,
    Dispatch,
    Input,
    PauseRequested,
    ResumeRequested,
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

__all__ = ["Scenario"]

D = TypeVar("D")


@final
class Scenario(Generic[D]):
    """A saga under test.

    Example::

        s = Scenario(ORDER, Order(order_id="o1", ...))
        s.expect_sent("reserve").reply(Reserved(hold_id="h1"))
        s.expect_sent("charge").fail("CardDeclined", retryable=False)
        s.expect_compensation("reserve").reply()
        s.expect_status("compensated")
    """

    def __init__(
        self,
        definition: SagaDefinition[D],
        data: D,
        *,
        saga_id: str = "saga-1",
        at: datetime | None = None,
        services_down: frozenset[str] = frozenset(),
    ) -> None:
        self.definition = definition
        self.now = at or datetime(2026, 1, 1, tzinfo=UTC)
        self.services_down = services_down
        self.decisions: list[Decision[D]] = []
        self.outstanding: dict[str, Dispatch] = {}
        self.timers: dict[str, datetime] = {}
        self._replies = 0
        self._take(
            start(
                definition,
                Start(saga_id=saga_id, data=data, at=self.now, services_down=services_down),
            )
        )

    # -- what the saga did ----------------------------------------------------------

    @property
    def state(self) -> SagaState[D]:
        return self.decisions[-1].state

    @property
    def data(self) -> D:
        return self.state.data

    @property
    def sent(self) -> list[Dispatch]:
        """Every command dispatched so far, in order."""
        return [e for d in self.decisions for e in d.effects if isinstance(e, Dispatch)]

    def expect_sent(self, step: str) -> _Pending[D]:
        """Assert the step's action is out and awaiting a reply."""
        return self._expect(step, "action")

    def expect_compensation(self, step: str) -> _Pending[D]:
        """Assert the step's compensation is out and awaiting a reply."""
        return self._expect(step, "compensation")

    def expect_nothing_sent(self) -> None:
        # Raised, not asserted: users' tests may run under ``python -O``.
        if self.outstanding:
            raise AssertionError(f"expected no command in flight, found {sorted(self.outstanding)}")

    def expect_status(self, status: str) -> None:
        if self.state.status != status:
            raise AssertionError(
                f"expected saga {status}, it is {self.state.status} (reason: {self.state.reason})"
            )

    def expect_step(self, step: str, status: str) -> None:
        actual = self.state.steps[step].status
        if actual != status:
            raise AssertionError(f"expected step {step!r} {status}, it is {actual}")

    # -- what happens to the saga --------------------------------------------------

    def signal(self, name: str, data: msgspec.Struct | dict[str, Any] | None = None) -> Decision[D]:
        self._replies += 1
        payload = msgspec.to_builtins(data) if data is not None else {}
        return self.feed(
            SignalReceived(
                message_id=f"signal-{self._replies}",
                name=name,
                data=payload,
                at=self.now,
                services_down=self.services_down,
            )
        )

    def cancel(self, reason: str = "cancelled by request") -> Decision[D]:
        return self.feed(
            CancelRequested(reason=reason, at=self.now, services_down=self.services_down)
        )

    def retry(self, by: str = "") -> Decision[D]:
        return self.feed(RetryRequested(by=by, at=self.now, services_down=self.services_down))

    def pause(self, by: str = "", *, hold_deadline: bool = False) -> Decision[D]:
        """Pause the saga: it sends nothing until `resume`; what arrives is held.

        A command already in flight can still be answered (``expect_sent(...).reply()``);
        the reply is recorded and takes effect on resume.
        """
        return self.feed(
            PauseRequested(
                by=by, hold_deadline=hold_deadline, at=self.now, services_down=self.services_down
            )
        )

    def resume(self, by: str = "") -> Decision[D]:
        """Resume a paused saga: what it held is applied, in the order it came."""
        return self.feed(ResumeRequested(by=by, at=self.now, services_down=self.services_down))

    def expect_paused(self, paused: bool = True) -> None:
        if self.state.paused != paused:
            raise AssertionError(f"expected the saga {'' if paused else 'not '}paused")

    def recover(self, service: str) -> Decision[D]:
        self.services_down = self.services_down - {service}
        return self.feed(
            ServiceRecovered(service=service, at=self.now, services_down=self.services_down)
        )

    def advance(self, delta: timedelta) -> list[Decision[D]]:
        """Let ``delta`` pass, firing each timer that falls due, in time order."""
        until = self.now + delta
        fired: list[Decision[D]] = []
        while self.timers and min(self.timers.values()) <= until:
            timer, due = min(self.timers.items(), key=lambda kv: kv[1])
            self.now = due
            del self.timers[timer]
            fired.append(
                self.feed(TimerFired(timer=timer, at=due, services_down=self.services_down))
            )
        self.now = until
        return fired

    def feed(self, inp: Input) -> Decision[D]:
        """Apply any input; the building block of the helpers above."""
        decision = decide(self.definition, self.state, inp)
        self._take(decision)
        return decision

    def _take(self, decision: Decision[D]) -> None:
        self.decisions.append(decision)
        for effect in decision.effects:
            if isinstance(effect, Dispatch):
                self.outstanding[f"{effect.step}:{effect.kind}"] = effect
            elif isinstance(effect, StartTimer):
                self.timers[effect.timer] = effect.due
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.timer, None)

    def _expect(self, step: str, kind: str) -> _Pending[D]:
        dispatch = self.outstanding.get(f"{step}:{kind}")
        in_flight = sorted(self.outstanding) or "nothing"
        if dispatch is None:
            raise AssertionError(f"expected {kind} of {step!r} in flight; found {in_flight}")
        return _Pending(self, dispatch)


@final
class _Pending(Generic[D]):
    """A command in flight; answer it."""

    def __init__(self, scenario: Scenario[D], dispatch: Dispatch) -> None:
        self.scenario = scenario
        self.dispatch = dispatch

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.dispatch.payload)
        return decoded

    def reply(self, result: msgspec.Struct | dict[str, Any] | None = None) -> Decision[D]:
        d, s = self.dispatch, self.scenario
        s.outstanding.pop(f"{d.step}:{d.kind}", None)
        return s.feed(
            StepCompleted(
                message_id=routes.reply_id(d.message_id),
                step=d.step,
                kind=d.kind,
                attempt=d.attempt,
                result=msgspec.to_builtins(result) if result is not None else {},
                at=s.now,
                services_down=s.services_down,
            )
        )

    def fail(
        self, error_type: str, message: str = "failed", *, retryable: bool = True
    ) -> Decision[D]:
        d, s = self.dispatch, self.scenario
        s.outstanding.pop(f"{d.step}:{d.kind}", None)
        return s.feed(
            StepFailed(
                message_id=routes.reply_id(d.message_id),
                step=d.step,
                kind=d.kind,
                attempt=d.attempt,
                error_type=error_type,
                error_message=message,
                retryable=retryable,
                at=s.now,
                services_down=s.services_down,
            )
        )

    def lose(self) -> None:
        """The command or its reply is lost: only a timeout will tell."""
        self.scenario.outstanding.pop(f"{self.dispatch.step}:{self.dispatch.kind}", None)
