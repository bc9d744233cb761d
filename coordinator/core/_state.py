"""Saga and step state: plain msgspec values, encoded as they are into the store."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Generic, Literal, TypeVar

import msgspec

from coordinator.core._inputs import Input

__all__ = ["STEP_TRANSITIONS", "SagaState", "SagaStatus", "StepState", "StepStatus"]

D = TypeVar("D")

SagaStatus = Literal["running", "compensating", "completed", "compensated", "failed", "cancelled"]

StepStatus = Literal[
    "pending",  # not reached yet
    "dispatched",  # a command attempt is out, reply or timeout awaited
    "retrying",  # an attempt failed or timed out; the next one waits for its backoff timer
    "awaiting_service",  # the participant's circuit breaker is open; nothing sent
    "waiting",  # a wait step expecting its signal
    "succeeded",
    "failed",  # the participant said it applied nothing (TaskFailed): no compensation owed
    "timed_out",  # no answer in time: the outcome is unknown, so compensation is owed
    "skipped",  # its ``when`` was false, or a wait timed out with on_timeout="continue"
    "abandoned",  # never finished because the saga began compensating first
    "compensating",
    "compensation_awaiting_service",  # its undo waits: the participant's circuit is open
    "compensated",
    "compensation_failed",
]

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    # Reached: sent, parked behind an open circuit, skipped, or a wait begins. Abandoned when
    # the saga turns back first (or its ``when`` raised); failed when ``send`` raised or the
    # circuit is open with on_unavailable="compensate".
    "pending": frozenset(
        {"dispatched", "awaiting_service", "waiting", "skipped", "abandoned", "failed"}
    ),
    # The reply or the timeout settles the attempt, or a retry is due.
    "dispatched": frozenset({"succeeded", "failed", "timed_out", "retrying"}),
    # The backoff ends in the next attempt (or a park, or ``send`` raising); a late success of
    # an earlier attempt counts; turning back abandons it, or settles it unknown.
    "retrying": frozenset(
        {"dispatched", "awaiting_service", "succeeded", "failed", "timed_out", "abandoned"}
    ),
    # Recovery sends it (or parks it again while the circuit stays open), as for a retry.
    "awaiting_service": frozenset(
        {"dispatched", "awaiting_service", "succeeded", "failed", "timed_out", "abandoned"}
    ),
    # The signal is taken or rejected, the wait times out, or the saga turns back.
    "waiting": frozenset({"succeeded", "failed", "timed_out", "skipped", "abandoned"}),
    # Settled steps that owe a compensation start it (or fail it at once when ``undo`` raises),
    # or park it while the service's circuit is open: an undo must run, so it never gives up.
    "succeeded": frozenset(
        {"compensating", "compensation_awaiting_service", "compensation_failed"}
    ),
    "timed_out": frozenset(
        {"compensating", "compensation_awaiting_service", "compensation_failed"}
    ),
    # A late success: it applied after all, and now owes its compensation.
    "failed": frozenset({"succeeded"}),
    # A late success as above; or the pivot succeeded and the saga goes forward again.
    "abandoned": frozenset({"succeeded", "pending"}),
    "skipped": frozenset(),
    # A retry of the compensation is a new attempt in the same status (or parked, when the
    # circuit opened in its backoff).
    "compensating": frozenset(
        {"compensating", "compensation_awaiting_service", "compensated", "compensation_failed"}
    ),
    # Recovery sends it (or parks it again); a late success of an earlier attempt settles it.
    "compensation_awaiting_service": frozenset(
        {"compensating", "compensation_awaiting_service", "compensated", "compensation_failed"}
    ),
    "compensated": frozenset(),
    # An operator's retry puts it back to where it was before compensating.
    "compensation_failed": frozenset({"succeeded", "timed_out"}),
}
"""Which step status may follow which; the core checks every change against it."""


class StepState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where one step (or wait) stands.

    Attributes:
        status: See :data:`StepStatus`.
        attempt: Number of the last action attempt dispatched (0: none yet).
        compensation_attempt: Number of the last compensation attempt dispatched.
        unknown: Some attempt timed out, so the effect may have been applied.
        owes: A compensation is owed (the step succeeded, or its outcome is unknown).
        error: The last error, for people.
        compensation_retry_due: The last compensation attempt failed; the next
            waits for its retry timer (stored as ``backoff``).
        compensation_base: Attempts before the current round of compensation (an
            operator's retry starts a new round; attempt numbers keep growing).
        finished_at: When the step settled (or its compensation did).
        dispatched_at: While the step is out (sent, retrying, parked; its action or
            its compensation), when the first attempt of it was sent: the step's
            duration in the metrics runs from it to its settling, retries and
            backoffs included. Cleared when it settles (it would only cost memory).
    """

    status: StepStatus = "pending"
    attempt: int = 0
    compensation_attempt: int = 0
    unknown: bool = False
    owes: bool = False
    error: str | None = None
    compensation_retry_due: bool = msgspec.field(default=False, name="backoff")
    compensation_base: int = 0
    finished_at: datetime | None = None
    dispatched_at: datetime | None = None


class SagaState(msgspec.Struct, Generic[D], frozen=True, kw_only=True, omit_defaults=True):
    """One saga instance.

    Attributes:
        revision: Grows by one with every input that changed the state; the store
            compares it before writing (optimistic concurrency).
        cursor: Index of the definition node the saga is at.
        settled: Steps in the order they succeeded or timed out; compensation walks
            it backwards.
        signals: Signals received before their wait was reached, by signal name.
        seen_signals: Message ids of signals already taken, so a duplicate is a no-op.
        outcome: The terminal status compensation will end in (compensated/cancelled).
        paused: An operator paused the saga: it sends nothing and fires no step
            timer; what arrives is kept in ``held`` and applied on resume, in order.
        paused_at: When it was paused.
        paused_by: Who paused it.
        hold_deadline: The deadline stopped with it (moved on by the pause on resume).
        held: Inputs received while paused that will change the saga on resume.
        trace: The W3C trace context of the saga's root span, which every later
            span of the saga joins. Opaque here: the runtime's telemetry sets it
            at the start, no decision reads or changes it.
    """

    TERMINAL: ClassVar[frozenset[SagaStatus]] = frozenset(
        {"completed", "compensated", "failed", "cancelled"}
    )
    """The statuses a saga ends in; no input changes it any more."""

    saga_id: str
    name: str
    version: int
    revision: int
    status: SagaStatus
    data: D
    cursor: int
    steps: dict[str, StepState]
    settled: tuple[str, ...] = ()
    signals: dict[str, dict[str, object]] = msgspec.field(default_factory=dict)
    seen_signals: tuple[str, ...] = ()
    outcome: SagaStatus | None = None
    reason: str | None = None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    paused: bool = False
    paused_at: datetime | None = None
    paused_by: str = ""
    hold_deadline: bool = False
    held: tuple[Input, ...] = ()
    trace: str = ""

    @property
    def terminal(self) -> bool:
        """Whether the saga has ended; no input changes it any more."""
        return self.status in SagaState.TERMINAL
