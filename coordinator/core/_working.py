"""The working copy of one saga while one input is applied, and its bookkeeping.

Everything that changes a saga goes through :class:`_Working`: a step's status
through :meth:`_Working.set_step` (checked against ``STEP_TRANSITIONS``), a step
that settles through :meth:`_Working.settle` (the one owner of ``settled`` and
``owes``), the end of the saga through :meth:`_Working.finish`. The rules that
decide which change to make are in :mod:`coordinator.core._machine`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeAlias, TypeVar

import msgspec

from contracts import LifecycleEvent, StepKind
from coordinator.core._definition import SagaDefinition, StepDef
from coordinator.core._effects import (
    CancelTimer,
    Decision,
    Dispatch,
    Effect,
    Notify,
    StartTimer,
)
from coordinator.core._inputs import Input, Start
from coordinator.core._state import STEP_TRANSITIONS, SagaState, SagaStatus, StepStatus
from coordinator.core._timers import TimerKey

__all__ = ["Changed", "_Working", "describe"]

D = TypeVar("D")

Changed: TypeAlias = bool
"""What an input handler returns: ``True`` if the input changed the saga, ``False``
if it is only recorded (a duplicate, a late reply, a stale timer, a refusal)."""


def describe(exc: BaseException) -> str:
    """An exception from a saga author's callback, for the reason and the history."""
    return f"{type(exc).__name__}: {exc}"


class _Working(Generic[D]):
    """A working copy of one saga for the length of one input."""

    def __init__(self, defn: SagaDefinition[D], state: SagaState[D], inp: Start[D] | Input) -> None:
        self.defn = defn
        self.old = state
        self.at: datetime = inp.at
        # The circuit breakers' view: the services no action may be sent to now.
        self.services_down = inp.services_down
        self.status: SagaStatus = state.status
        self.data: D = state.data
        self.cursor = state.cursor
        self.steps = dict(state.steps)
        self.settled = list(state.settled)
        self.signals = dict(state.signals)
        self.seen_signals = state.seen_signals
        self.outcome = state.outcome
        self.reason = state.reason
        self.finished_at = state.finished_at
        self.effects: list[Effect] = []
        self.notes: list[str] = []
        self.refused = ""

    # -- steps --------------------------------------------------------------

    def set_step(self, name: str, **changes: object) -> None:
        old = self.steps[name]
        new = msgspec.structs.replace(old, **changes)
        if "status" in changes:
            _check_transition(name, old.status, new.status)
        self.steps[name] = new

    def settle(
        self, name: str, status: Literal["succeeded", "timed_out"], **changes: object
    ) -> None:
        """The step applied, or may have: it joins ``settled`` and owes its undo, if any."""
        owes = self.defn.steps[name].undo is not None
        self.set_step(name, status=status, owes=owes, **changes)
        self.settled.append(name)

    # -- what the world hears -----------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)

    def refuse(self, reason: str) -> Changed:
        """Turn an operator's input down: the saga stays as it was, the sender hears why."""
        self.refused = reason
        self.note(f"refused: {reason}")
        return False

    def timer(self, key: TimerKey, due: datetime) -> None:
        self.effects.append(StartTimer(timer=key.name, due=due))

    def cancel_timer(self, key: TimerKey) -> None:
        self.effects.append(CancelTimer(timer=key.name))

    def emit(self, step: StepDef[D], kind: StepKind, attempt: int, payload: msgspec.Struct) -> None:
        """Send one attempt of a step's action or compensation, with its timeout."""
        saga_id = self.old.saga_id
        st = self.steps[step.name]
        if attempt == (1 if kind == "action" else st.compensation_base + 1):
            self.steps[step.name] = msgspec.structs.replace(st, dispatched_at=self.at)
        deadline = self.at + step.timeout if step.timeout is not None else None
        self.effects.append(
            Dispatch(
                message_id=f"{saga_id}:{step.name}:{kind}:{attempt}",
                idempotency_key=f"{saga_id}:{step.name}:{kind}",
                step=step.name,
                kind=kind,
                attempt=attempt,
                service=step.service,
                command=type(payload).__name__,
                payload=msgspec.Raw(msgspec.json.encode(payload)),
                deadline=deadline,
            )
        )
        if deadline is not None:
            self.timer(TimerKey.timeout(step.name, kind, attempt), deadline)
        verb = "sent" if kind == "action" else "compensation sent"
        self.note(f"{step.name} {verb} (attempt {attempt})")

    def finish(self, status: SagaStatus, event: LifecycleEvent, reason: str | None) -> None:
        self.status = status
        self.reason = reason if reason is not None else self.reason
        self.finished_at = self.at
        if self.defn.deadline is not None:
            self.cancel_timer(TimerKey.deadline())
        self.effects.append(Notify(event=event, reason=self.reason))
        self.note(f"saga {status}" + (f": {self.reason}" if self.reason else ""))

    # -- the result ---------------------------------------------------------

    def decision(self, *, started: bool = False) -> Decision[D]:
        for name, st in self.steps.items():
            # Kept only while the step is out: a settled step has its ``finished_at``,
            # and every byte of a finished saga stays in Redis until it expires.
            if st.dispatched_at is not None and st.status not in _OUT:
                self.steps[name] = msgspec.structs.replace(st, dispatched_at=None)
        new = msgspec.structs.replace(
            self.old,
            revision=self.old.revision + 1,
            status=self.status,
            data=self.data,
            cursor=self.cursor,
            steps=self.steps,
            settled=tuple(self.settled),
            signals=self.signals,
            seen_signals=self.seen_signals,
            outcome=self.outcome,
            reason=self.reason,
            updated_at=self.at,
            finished_at=self.finished_at,
        )
        return Decision(
            state=new,
            effects=tuple(self.effects),
            note="; ".join(self.notes),
            changed=True,
            status_before=None if started else self.old.status,
        )

    def unchanged(self) -> Decision[D]:
        """The input is only recorded: the saga stays exactly as it was."""
        return Decision(
            state=self.old,
            effects=(),
            note="; ".join(self.notes) or "ignored",
            changed=False,
            refused=self.refused,
            status_before=self.old.status,
        )


# A step is out (an attempt sent, in its backoff or parked) in these, its action's or its
# undo's; the time its first attempt went out is kept while it is.
_OUT: frozenset[StepStatus] = frozenset(
    {
        "dispatched",
        "retrying",
        "awaiting_service",
        "compensating",
        "compensation_awaiting_service",
    }
)


def _check_transition(name: str, old: StepStatus, new: StepStatus) -> None:
    # Not a user's mistake: every change is made by the core, so one the table does not
    # allow is a bug here. Raised rather than asserted, so it holds under ``python -O``.
    if new not in STEP_TRANSITIONS[old]:
        raise RuntimeError(f"core bug: step {name!r} may not go from {old} to {new}")
