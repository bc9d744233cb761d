"""What can happen to a saga. Time arrives with every input; the core reads no clock."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from contracts import StepKind

__all__ = [
    "NOTHING_DOWN",
    "CancelRequested",
    "Input",
    "PauseRequested",
    "ResumeRequested",
    "RetryRequested",
    "ServiceRecovered",
    "SignalReceived",
    "Start",
    "StepCompleted",
    "StepFailed",
    "StepReply",
    "TimerFired",
]

D = TypeVar("D")

# The default of ``services_down``. msgspec leaves a default out of the JSON only
# when it is this very object, so callers pass it rather than a new empty set.
NOTHING_DOWN: frozenset[str] = frozenset()


class _Input(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    # ``services_down`` is the circuit breakers' view when the input is handled:
    # the core decides whether a command may be sent from it, without I/O.
    at: datetime
    services_down: frozenset[str] = NOTHING_DOWN


class Start(_Input, Generic[D], frozen=True, kw_only=True):
    """Begin a saga with its input data (``by``: who asked, for the history)."""

    saga_id: str
    data: D
    by: str = ""


class StepCompleted(_Input, frozen=True, kw_only=True):
    """A participant applied a command (``TaskCompleted``)."""

    message_id: str
    step: str
    kind: StepKind
    attempt: int
    result: dict[str, object] = msgspec.field(default_factory=dict)


class StepFailed(_Input, frozen=True, kw_only=True):
    """A participant applied nothing and says why (``TaskFailed``)."""

    message_id: str
    step: str
    kind: StepKind
    attempt: int
    error_type: str
    error_message: str
    retryable: bool = True


class TimerFired(_Input, frozen=True, kw_only=True):
    """A timer the saga scheduled is due."""

    timer: str


class SignalReceived(_Input, frozen=True, kw_only=True):
    """An external signal (approval, webhook) addressed to the saga."""

    message_id: str
    name: str
    data: dict[str, object] = msgspec.field(default_factory=dict)
    by: str = ""


class CancelRequested(_Input, frozen=True, kw_only=True):
    """Someone asked to stop the saga; what was done is compensated."""

    reason: str = "cancelled by request"
    by: str = ""


class ServiceRecovered(_Input, frozen=True, kw_only=True):
    """A participant's circuit breaker lets calls through again."""

    service: str


class RetryRequested(_Input, frozen=True, kw_only=True):
    """An operator asks a failed saga to try its failed compensations again.

    Attributes:
        by: Who asked, for the history.
    """

    by: str = ""


class PauseRequested(_Input, frozen=True, kw_only=True):
    """An operator stops a saga from sending anything until it is resumed.

    Attributes:
        by: Who asked, for the history.
        hold_deadline: Stop the saga's deadline too; on resume it is moved on by
            the time the saga was paused.
    """

    by: str = ""
    hold_deadline: bool = False


class ResumeRequested(_Input, frozen=True, kw_only=True):
    """An operator lets a paused saga go on with what it received while paused."""

    by: str = ""


Input = (
    StepCompleted
    | StepFailed
    | TimerFired
    | SignalReceived
    | CancelRequested
    | ServiceRecovered
    | RetryRequested
    | PauseRequested
    | ResumeRequested
)

StepReply = StepCompleted | StepFailed
"""A participant's reply to one attempt of a step's action or compensation."""
