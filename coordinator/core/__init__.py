"""The pure saga state machine: no I/O, no clock, no randomness.

Everything here is a value or a function of values; adapters around it do the
rest. An import-linter contract keeps it that way.
"""

from contracts._public import show_as_public
from coordinator.core._definition import (
    Node,
    OnTimeout,
    OnUnavailable,
    ParallelDef,
    SagaDefinition,
    StepDef,
    WaitDef,
)
from coordinator.core._effects import CancelTimer, Decision, Dispatch, Effect, Notify, StartTimer
from coordinator.core._inputs import (
    NOTHING_DOWN,
    CancelRequested,
    Input,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
    Start,
    StepCompleted,
    StepFailed,
    TimerFired,
)
from coordinator.core._machine import decide, start
from coordinator.core._retry import Retry
from coordinator.core._state import (
    STEP_TRANSITIONS,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from coordinator.core._timers import TimerKey

__all__ = [
    "STEP_TRANSITIONS",
    "NOTHING_DOWN",
    "CancelRequested",
    "CancelTimer",
    "Decision",
    "Dispatch",
    "Effect",
    "Input",
    "Node",
    "Notify",
    "OnTimeout",
    "OnUnavailable",
    "ParallelDef",
    "PauseRequested",
    "ResumeRequested",
    "Retry",
    "RetryRequested",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "ServiceRecovered",
    "SignalReceived",
    "Start",
    "StartTimer",
    "StepCompleted",
    "StepDef",
    "StepFailed",
    "StepState",
    "StepStatus",
    "TimerFired",
    "TimerKey",
    "WaitDef",
    "decide",
    "start",
]

show_as_public(__name__, globals(), __all__)
