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
from coordinator._sealing import Sealer
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
    "dedupe_id",
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


def what_of(message: TaskCompleted | TaskFailed | SagaRequest) -> str:
    """A short name of what a message asks, for spans: ``reply``, ``signal``, ``cancel``..."""
    return "reply" if isinstance(message, TaskCompleted | TaskFailed) else request_name(message)


def dedupe_id(message: TaskCompleted | TaskFailed | SagaRequest) -> str:
    """The id the store refuses a second commit of: the message id, and for a reply its outcome.

    A reply's id is fixed by its command (``routes.reply_id``), yet one command can
    be answered twice with different outcomes by a participant that does not
    record a retryable failure for its command (the SDK does; one written without
    it, or an earlier SDK, may not): a command redelivered after it died before
    acking it runs again, and may apply. That success is news, not a copy of the
    failure. Copies of one outcome keep one id; what a stale copy of either could
    still do, the core's reply rules refuse.
    """
    if isinstance(message, TaskCompleted | TaskFailed):
        return f"{message.message_id}:{type(message).__name__}"
    return message.message_id


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
        headers=_trace(state),
    )


def lifecycle_entry(
    codec: Codec, state: SagaState[Any], effect: Notify, now: datetime, sealer: Sealer
) -> OutboxEntry:
    message_id = f"{state.saga_id}:{effect.event}:{state.revision}"
    event = SagaLifecycle(
        message_id=message_id,
        saga_id=state.saga_id,
        saga_name=state.name,
        saga_version=state.version,
        event=effect.event,
        reason=effect.reason,
        # Observers get sensitive fields sealed: those holding the keys open them.
        data=sealer.sealed_data(
            msgspec.to_builtins(state.data), state.saga_id, state.name, state.version
        ),
        sent_at=now,
    )
    return OutboxEntry(
        saga_id=state.saga_id,
        message_id=message_id,
        exchange="lifecycle",
        routing_key=routes.lifecycle_key(state.name, effect.event),
        body=codec.encode(event),
        created_at=now,
        headers=_trace(state),
    )


def _trace(state: SagaState[Any]) -> dict[str, str]:
    # The saga's root context: the parent of the send span of a message the relay
    # publishes later, on any replica (right after the commit, the transition's
    # span is the parent and replaces it).
    return {"traceparent": state.trace} if state.trace else {}


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
                by=message.by,
                at=at,
                services_down=down,
            )
        case CancelSaga():
            return lambda at, down: CancelRequested(
                reason=message.reason, by=message.by, at=at, services_down=down
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
        version=decision.state.version,
    )
