"""Between the wire and the core: messages to inputs, effects to outbox entries,
and the history line of each transition."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from contracts import (
    CancelSaga,
    Codec,
    Command,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    SagaLifecycle,
    Signal,
    TaskCompleted,
    TaskFailed,
    routes,
)
from coordinator.core import (
    CancelRequested,
    Decision,
    Dispatch,
    Input,
    Notify,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SagaState,
    SignalReceived,
    Start,
    StepCompleted,
    StepFailed,
)
from coordinator.ports import HistoryEntry, OutboxEntry

__all__ = [
    "SagaRequest",
    "command_entry",
    "history_entry",
    "input_for",
    "lifecycle_entry",
    "request_name",
]

MakeInput = Callable[[datetime, frozenset[str]], Input]

SagaRequest = Signal | CancelSaga | RetrySaga | PauseSaga | ResumeSaga
"""A request for one existing saga, which the saga may refuse."""

_REQUEST_NAMES: dict[type[SagaRequest], str] = {
    Signal: "signal",
    CancelSaga: "cancel",
    RetrySaga: "retry",
    PauseSaga: "pause",
    ResumeSaga: "resume",
}


def request_name(message: SagaRequest) -> str:
    """What the request is called in a refusal (``{name}_refused``) and to operators."""
    return _REQUEST_NAMES[type(message)]


def command_entry(
    codec: Codec, state: SagaState[Any], effect: Dispatch, causation_id: str, now: datetime
) -> OutboxEntry:
    command = Command(
        message_id=effect.message_id,
        idempotency_key=effect.idempotency_key,
        saga_id=state.saga_id,
        saga_name=state.name,
        saga_version=state.version,
        step=effect.step,
        attempt=effect.attempt,
        kind=effect.kind,
        service=effect.service,
        command=effect.command,
        payload=msgspec.json.decode(effect.payload),
        causation_id=causation_id,
        sent_at=now,
        deadline=effect.deadline,
    )
    return OutboxEntry(
        saga_id=state.saga_id,
        message_id=effect.message_id,
        exchange="commands",
        routing_key=command.routing_key,
        body=codec.encode(command),
        created_at=now,
    )


def lifecycle_entry(
    codec: Codec, state: SagaState[Any], effect: Notify, now: datetime
) -> OutboxEntry:
    message_id = f"{state.saga_id}:{effect.event}:{state.revision}"
    event = SagaLifecycle(
        message_id=message_id,
        saga_id=state.saga_id,
        saga_name=state.name,
        saga_version=state.version,
        event=effect.event,
        reason=effect.reason,
        data=msgspec.to_builtins(state.data),
        sent_at=now,
    )
    return OutboxEntry(
        saga_id=state.saga_id,
        message_id=message_id,
        exchange="lifecycle",
        routing_key=routes.lifecycle_key(state.name, effect.event),
        body=codec.encode(event),
        created_at=now,
    )


def input_for(message: TaskCompleted | TaskFailed | SagaRequest) -> MakeInput:
    """The core input a message stands for, made when the saga is loaded (``at`` is then)."""
    match message:
        case TaskCompleted():
            return lambda at, down: StepCompleted(
                message_id=message.message_id,
                step=message.step,
                kind=message.kind,
                attempt=message.attempt,
                result=message.result,
                at=at,
                services_down=down,
            )
        case TaskFailed():
            return lambda at, down: StepFailed(
                message_id=message.message_id,
                step=message.step,
                kind=message.kind,
                attempt=message.attempt,
                error_type=message.error_type,
                error_message=message.error_message,
                retryable=message.retryable,
                at=at,
                services_down=down,
            )
        case Signal():
            return lambda at, down: SignalReceived(
                message_id=message.message_id,
                name=message.name,
                data=message.data,
                at=at,
                services_down=down,
            )
        case CancelSaga():
            return lambda at, down: CancelRequested(
                reason=message.reason, at=at, services_down=down
            )
        case RetrySaga():
            return lambda at, down: RetryRequested(by=message.by, at=at, services_down=down)
        case PauseSaga():
            return lambda at, down: PauseRequested(
                by=message.by, hold_deadline=message.hold_deadline, at=at, services_down=down
            )
        case ResumeSaga():
            return lambda at, down: ResumeRequested(by=message.by, at=at, services_down=down)


def history_entry(
    revision: int, inp: Input | Start[Any], decision: Decision[Any], input_id: str = ""
) -> HistoryEntry:
    return HistoryEntry(
        at=inp.at,
        revision=revision,
        input=msgspec.Raw(msgspec.json.encode(inp)),
        note=decision.note,
        effects=msgspec.Raw(msgspec.json.encode(decision.effects)),
        changed=decision.changed,
        input_id=input_id,
        refused=decision.refused,
        status_before=decision.status_before,
        status_after=decision.state.status,
    )
