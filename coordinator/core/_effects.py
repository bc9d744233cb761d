"""What the core asks the world to do. The runtime carries these out after commit."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from contracts import LifecycleEvent, StepKind
from coordinator.core._state import SagaState, SagaStatus

__all__ = [
    "CancelTimer",
    "Decision",
    "Dispatch",
    "Effect",
    "Notify",
    "StartTimer",
]

D = TypeVar("D")


class Dispatch(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Send one command attempt to a participant service.

    ``message_id`` is unique per attempt; ``idempotency_key`` is shared by every
    attempt of the same step and kind, so a participant that already applied the
    step answers a retry with the reply it recorded instead of acting again.
    """

    message_id: str
    idempotency_key: str
    step: str
    kind: StepKind
    attempt: int
    service: str
    command: str
    payload: msgspec.Raw
    deadline: datetime | None = None


class StartTimer(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Deliver ``TimerFired(timer)`` at ``due``."""

    timer: str
    due: datetime


class CancelTimer(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Forget a timer that is no longer needed."""

    timer: str


class Notify(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Publish a saga lifecycle event for other services."""

    event: LifecycleEvent
    reason: str | None = None


Effect = Dispatch | StartTimer | CancelTimer | Notify


class Decision(msgspec.Struct, Generic[D], frozen=True, kw_only=True):
    """The result of one input: the new state, what to do, and a line for the history.

    ``changed`` is false when the input was a duplicate, late, or not applicable:
    the state is returned as it was, the input is only recorded. ``refused`` says
    why an operator's input (a signal, a cancel, a retry, a pause, a resume)
    cannot be taken, for the sender to hear; it is empty for every input that was
    applied, and for replies and timers, which are only recorded when they do not
    apply.
    ``status_before`` is the saga's status before the input (``None`` when the
    input started it), so the history can say what the input did without
    reading the note.
    """

    state: SagaState[D]
    effects: tuple[Effect, ...]
    note: str
    changed: bool
    refused: str = ""
    status_before: SagaStatus | None = None
