"""Where messages go: the exchanges, queues, routing keys and header names of the wire.

Both sides, the RabbitMQ topology export and the AsyncAPI document take their
names from here, so a convention changes in one place or not at all. Every
string is part of the wire: queues and bindings exist on running brokers and
messages in flight carry these keys, so a change here needs a migration.

On the broker every exchange and queue name is prefixed with the deployment's
namespace (`address`); the names below are without it::

    exchange    queue                 bound by          routing keys published
    commands    {service}.commands    {service}.*       {service}.{command}
    events      coordinator.events    #                 {saga}.TaskCompleted, {saga}.TaskFailed,
                                                        {saga}.StartSaga, signal.Signal,
                                                        cancel.CancelSaga, retry.RetrySaga,
                                                        pause.PauseSaga, resume.ResumeSaga
    lifecycle   (whoever listens)                       {saga}.{event}, e.g. orders.completed
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "CANCEL_KEY",
    "DEAD_LETTER_AT_HEADER",
    "DEAD_LETTER_DETAIL_HEADER",
    "DEAD_LETTER_REASON_HEADER",
    "DEFAULT_NAMESPACE",
    "EVENTS_BINDING",
    "EVENTS_QUEUE",
    "EXCHANGES",
    "Exchange",
    "ORIGINAL_EXCHANGE_HEADER",
    "ORIGINAL_QUEUE_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "PAUSE_KEY",
    "RESUME_KEY",
    "RETRY_KEY",
    "SIGNAL_KEY",
    "DEAD_LETTER_HEADERS",
    "address",
    "check_exchange",
    "command_key",
    "commands_binding",
    "commands_queue",
    "lifecycle_key",
    "reply_id",
    "reply_key",
    "start_key",
]

Exchange = Literal["commands", "events", "lifecycle"]
"""The three topic exchanges: commands to participants, events to the coordinator,
lifecycle announcements to whoever listens."""

EXCHANGES: Final[tuple[Exchange, ...]] = get_args(Exchange)

DEFAULT_NAMESPACE: Final = "saga"
"""The namespace of a deployment that does not choose one (and of the AsyncAPI document)."""

EVENTS_QUEUE: Final = "coordinator.events"
"""The coordinators' one queue: replies and operators' requests, shared by all replicas."""

EVENTS_BINDING: Final = "#"
"""`EVENTS_QUEUE` takes everything published to ``events``."""

SIGNAL_KEY: Final = "signal.Signal"
CANCEL_KEY: Final = "cancel.CancelSaga"
RETRY_KEY: Final = "retry.RetrySaga"
PAUSE_KEY: Final = "pause.PauseSaga"
RESUME_KEY: Final = "resume.ResumeSaga"

# Set on a message parked in a dead-letter queue, beside its own headers.
DEAD_LETTER_REASON_HEADER: Final = "x-death-reason"
DEAD_LETTER_DETAIL_HEADER: Final = "x-death-detail"
DEAD_LETTER_AT_HEADER: Final = "x-death-at"
"""When it was parked, ISO 8601 in UTC (the parking process's clock)."""
# Where a parked message came from; RabbitMQ keeps its own only in ``x-death``.
ORIGINAL_QUEUE_HEADER: Final = "x-original-queue"
ORIGINAL_EXCHANGE_HEADER: Final = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-original-routing-key"
DEAD_LETTER_HEADERS: Final = frozenset(
    {
        DEAD_LETTER_REASON_HEADER,
        DEAD_LETTER_DETAIL_HEADER,
        DEAD_LETTER_AT_HEADER,
        ORIGINAL_QUEUE_HEADER,
        ORIGINAL_EXCHANGE_HEADER,
        ORIGINAL_ROUTING_KEY_HEADER,
    }
)
"""What parking adds to a message's headers; a message moved back to its queue drops them."""


def check_exchange(exchange: str) -> None:
    """Refuse a name that is not one of the three exchanges.

    Raises:
        ValueError: If ``exchange`` is not in `EXCHANGES`.
    """
    if exchange not in EXCHANGES:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {', '.join(EXCHANGES)}")


def address(namespace: str, name: str) -> str:
    """The broker name of an exchange or queue in ``namespace``: ``{namespace}.{name}``."""
    return f"{namespace}.{name}"


def commands_queue(service: str) -> str:
    """The queue of a participant service: ``{service}.commands``."""
    return f"{service}.commands"


def commands_binding(service: str) -> str:
    """The pattern binding a service's queue to ``commands``: ``{service}.*``."""
    return f"{service}.*"


def command_key(service: str, command: str) -> str:
    """The routing key of a command on ``commands``: ``{service}.{command}``."""
    return f"{service}.{command}"


def reply_key(saga_name: str, reply: str) -> str:
    """The routing key of a reply on ``events``: ``{saga}.TaskCompleted`` or ``{saga}.TaskFailed``.

    Args:
        saga_name: The saga definition the command belongs to.
        reply: The reply's type, ``TaskCompleted`` or ``TaskFailed``.
    """
    return f"{saga_name}.{reply}"


def start_key(saga_name: str) -> str:
    """The routing key of a ``StartSaga`` on ``events``: ``{saga}.StartSaga``."""
    return f"{saga_name}.StartSaga"


def lifecycle_key(saga_name: str, event: str) -> str:
    """The routing key of a ``SagaLifecycle`` announcement: ``{saga}.{event}``."""
    return f"{saga_name}.{event}"


def reply_id(command_message_id: str) -> str:
    """The message id of the reply to a command: ``{command id}:reply``.

    Fixed by the command, so the coordinator recognises a reply sent twice.
    """
    return f"{command_message_id}:reply"
