"""The wire messages exchanged by the coordinator and the participants.

Evolution rules, because old and new versions of each side run side by side
during a deploy:

* Additive changes only. A new field gets a default, so a message from an
  older sender still decodes; unknown fields are ignored (no
  ``forbid_unknown_fields``), so a newer sender's message decodes here too.
* A breaking change is a new message class, hence a new ``type`` tag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, get_args

import msgspec

from contracts._errors import ContractError
from contracts._routes import command_key

CONTRACTS_VERSION: Final = "1"
"""Version of the wire contract; it changes only when a message class is replaced."""

StepKind: TypeAlias = Literal["action", "compensation"]
"""Whether a command performs a step or undoes it."""

LifecycleEvent: TypeAlias = Literal["started", "completed", "compensated", "failed", "cancelled"]
"""What a saga's lifecycle announcement says happened to it."""

LIFECYCLE_EVENTS: Final[frozenset[LifecycleEvent]] = frozenset(get_args(LifecycleEvent))
"""Every lifecycle event, e.g. the default of what the coordinator announces."""

# An offset is required on the wire: a naive timestamp means something different
# on every host, and RFC 3339 (JSON Schema "date-time") demands one anyway.
_Timestamp: TypeAlias = Annotated[datetime, msgspec.Meta(tz=True)]


def _require_aware(name: str, value: datetime | None) -> None:
    # Decoding already enforces this through ``Meta(tz=True)``; construction does
    # not, and a naive timestamp would only fail later, on the receiving side.
    if value is not None and value.utcoffset() is None:
        raise ContractError(
            f"`{name}` must be timezone-aware (use UTC), got {value.isoformat()}",
            reason="schema_mismatch",
        )


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    # Each subclass gets its own class name as its tag (``"type": "Command"``);
    # this base is never sent.
    message_id: str
    saga_id: str
    sent_at: _Timestamp

    def __post_init__(self) -> None:
        _require_aware("sent_at", self.sent_at)


class Command(_Message, frozen=True, kw_only=True):
    """The coordinator asks a participant to perform or undo one step.

    Attributes:
        message_id: Unique per attempt and deterministic, so a republished
            command is recognised: ``{saga_id}:{step}:{kind}:{attempt}``. A
            participant records a retryable failure under it alone and
            replays that to a redelivery of this command, never answering
            one command twice with different outcomes.
        idempotency_key: The same for every attempt of a step:
            ``{saga_id}:{step}:{kind}``. A participant records a success or a
            non-retryable failure under it and replays that instead of acting again.
        saga_id: The saga instance (its business key).
        saga_name: The saga definition's name.
        saga_version: The definition's version this instance runs on.
        step: The step's name within the definition.
        attempt: 1 for the first try, incremented by each retry.
        kind: ``"action"`` to perform the step, ``"compensation"`` to undo it.
        service: The participant service that handles the command.
        command: The command's name within that service, e.g. ``"Reserve"``.
        payload: The command's arguments, a JSON object.
        causation_id: The ``message_id`` of the input that caused this command.
        sent_at: When the coordinator decided to send it (UTC).
        deadline: When the coordinator stops waiting for a reply; work
            finished later may be compensated.
    """

    idempotency_key: str
    saga_name: str
    saga_version: int
    step: str
    attempt: int
    kind: StepKind
    service: str
    command: str
    payload: dict[str, Any]
    causation_id: str | None = None
    deadline: _Timestamp | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_aware("deadline", self.deadline)

    @property
    def routing_key(self) -> str:
        """The routing key on the ``saga.commands`` topic exchange: ``{service}.{command}``."""
        return command_key(self.service, self.command)


class _StepReply(_Message, frozen=True, kw_only=True):
    # The envelope both replies share; it names the attempt it answers so the
    # coordinator can tell a late or duplicate reply from the current one.
    saga_name: str
    step: str
    attempt: int
    kind: StepKind
    causation_id: str


class TaskCompleted(_StepReply, frozen=True, kw_only=True):
    """A participant performed (or undid) a step.

    Attributes:
        message_id: The reply's own id.
        saga_id: The saga instance.
        saga_name: The saga definition's name.
        step: The step the command was for.
        attempt: The attempt the command was for.
        kind: ``"action"`` or ``"compensation"``, copied from the command.
        causation_id: The answered command's ``message_id``.
        sent_at: When the participant sent the reply (UTC).
        result: The step's output, a JSON object; later steps may read it.
    """

    result: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskFailed(_StepReply, frozen=True, kw_only=True):
    """A participant could not perform (or undo) a step and applied nothing.

    Attributes:
        message_id: The reply's own id.
        saga_id: The saga instance.
        saga_name: The saga definition's name.
        step: The step the command was for.
        attempt: The attempt the command was for.
        kind: ``"action"`` or ``"compensation"``, copied from the command.
        causation_id: The answered command's ``message_id``.
        sent_at: When the participant sent the reply (UTC).
        error_type: A stable name for the failure, e.g. ``"OutOfStock"``; retry
            policies match on it.
        error_message: What went wrong, for a human.
        retryable: False when trying again cannot help (e.g. a business rule
            refused); the coordinator then skips its retries.
    """

    error_type: str
    error_message: str
    retryable: bool = True


class StartSaga(_Message, frozen=True, kw_only=True):
    """A request to start a saga.

    Attributes:
        message_id: The request's id.
        saga_id: The business key of the new instance; a second request with
            the same key does not start a second saga.
        saga_name: The saga definition to run.
        input: The saga's input, a JSON object.
        sent_at: When the request was sent (UTC).
        causation_id: The id of whatever caused the request, if any.
        by: Who asked, for the history.
    """

    saga_name: str
    input: dict[str, Any]
    causation_id: str | None = None
    by: str = ""


class Signal(_Message, frozen=True, kw_only=True):
    """An external event a waiting saga can resume on (e.g. an approval).

    Attributes:
        message_id: The signal's id.
        saga_id: The saga instance it is for.
        name: The signal's name, matched against the saga's ``wait_for``.
        data: Details of the signal, a JSON object.
        sent_at: When the signal was sent (UTC).
        by: Who sent it, for the history.
    """

    name: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    by: str = ""


class CancelSaga(_Message, frozen=True, kw_only=True):
    """A request to cancel a running saga; completed steps are compensated.

    Attributes:
        message_id: The request's id.
        saga_id: The saga instance to cancel.
        reason: Why, for the history and the operators.
        sent_at: When the request was sent (UTC).
        by: Who asked, for the history.
    """

    reason: str = "cancelled by request"
    by: str = ""


class RetrySaga(_Message, frozen=True, kw_only=True):
    """An operator's request to retry a ``failed`` saga's failed compensations.

    The saga goes on compensating where it stopped; a step already compensated
    is not compensated again.

    Attributes:
        message_id: The request's id.
        saga_id: The saga instance to retry.
        by: Who asked, for the history.
        sent_at: When the request was sent (UTC).
    """

    by: str = ""


class PauseSaga(_Message, frozen=True, kw_only=True):
    """An operator's request to pause a saga: it sends nothing until resumed.

    Replies, signals and due timers that reach a paused saga are recorded and
    take effect on resume, in the order they came.

    Attributes:
        message_id: The request's id.
        saga_id: The saga instance to pause.
        by: Who asked, for the history.
        hold_deadline: Stop the saga's deadline while paused (it is moved on by
            the time paused); by default it keeps running.
        sent_at: When the request was sent (UTC).
    """

    by: str = ""
    hold_deadline: bool = False


class ResumeSaga(_Message, frozen=True, kw_only=True):
    """An operator's request to resume a paused saga.

    Attributes:
        message_id: The request's id.
        saga_id: The saga instance to resume.
        by: Who asked, for the history.
        sent_at: When the request was sent (UTC).
    """

    by: str = ""


class SagaLifecycle(_Message, frozen=True, kw_only=True):
    """The coordinator announces that a saga started or ended, for other services to react.

    Attributes:
        message_id: The announcement's id.
        saga_id: The saga instance.
        saga_name: The saga definition's name.
        saga_version: The definition's version the instance ran on.
        event: What happened: ``"started"``, ``"completed"``, ``"compensated"``,
            ``"failed"`` (compensation exhausted, an operator must act) or
            ``"cancelled"``.
        reason: Why the saga did not complete, when it did not.
        data: Details, a JSON object (e.g. the saga's output on completion).
        sent_at: When the coordinator sent it (UTC).
    """

    saga_name: str
    saga_version: int
    event: LifecycleEvent
    reason: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


Reply: TypeAlias = TaskCompleted | TaskFailed
"""A participant's answer to a command."""

CoordinatorInbound: TypeAlias = (
    TaskCompleted
    | TaskFailed
    | StartSaga
    | Signal
    | CancelSaga
    | RetrySaga
    | PauseSaga
    | ResumeSaga
)
"""Everything the coordinator's queue receives."""

WireMessage: TypeAlias = (
    Command
    | TaskCompleted
    | TaskFailed
    | StartSaga
    | Signal
    | CancelSaga
    | RetrySaga
    | PauseSaga
    | ResumeSaga
    | SagaLifecycle
)
"""Every message of the contract; the schema exports are generated from this union."""
