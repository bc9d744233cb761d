"""Where messages go: the exchanges, queues, routing keys and header names of the wire.

Both sides, the RabbitMQ topology export and the AsyncAPI document take their
names from here, so a convention changes in one place or not at all. Every
string is part of the wire: queues and bindings exist on running brokers and
messages in flight carry these keys, so a change here needs a migration.

On the broker every exchange and queue name is prefixed with the deployment's
namespace (`address`); the names below are without it::

    exchange    queue                 bound by          routing keys published
    commands    {service}.commands    {service}.*       {service}.{command}
    events      coordinator.events    #                 reply.{service}.{saga}.TaskCompleted,
                                                        reply.{service}.{saga}.TaskFailed,
                                                        control.start.{saga}, control.signal,
                                                        control.cancel, control.retry,
                                                        control.pause, control.resume
    lifecycle   (whoever listens)                       {saga}.{event}, e.g. orders.completed

On ``events`` the first word says who may publish: ``reply.{service}.…`` only that
service's user, ``control.…`` only the coordinator's and the operators' users (RabbitMQ
topic permissions can confine each user to its prefix). The keys before that scheme
(``{saga}.TaskCompleted``, ``{saga}.StartSaga``, ``signal.Signal``, ``cancel.CancelSaga``,
``retry.RetrySaga``, ``pause.PauseSaga``, ``resume.ResumeSaga``) are still taken by the
coordinator for one release: `events_route` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    "SIG_HEADER",
    "SIG_TS_HEADER",
    "DEAD_LETTER_HEADERS",
    "EventsRoute",
    "ORIGINAL_USER_ID_HEADER",
    "address",
    "check_exchange",
    "command_key",
    "commands_binding",
    "commands_queue",
    "events_route",
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

SIGNAL_KEY: Final = "control.signal"
CANCEL_KEY: Final = "control.cancel"
RETRY_KEY: Final = "control.retry"
PAUSE_KEY: Final = "control.pause"
RESUME_KEY: Final = "control.resume"

# What each control key (and, until the old keys go, each old one) carries.
_CONTROL_TYPES: Final = {
    "signal": "Signal",
    "cancel": "CancelSaga",
    "retry": "RetrySaga",
    "pause": "PauseSaga",
    "resume": "ResumeSaga",
}
_REPLY_TYPES: Final = frozenset({"TaskCompleted", "TaskFailed"})

# Set on a message parked in a dead-letter queue, beside its own headers.
DEAD_LETTER_REASON_HEADER: Final = "x-death-reason"
DEAD_LETTER_DETAIL_HEADER: Final = "x-death-detail"
DEAD_LETTER_AT_HEADER: Final = "x-death-at"
"""When it was parked, ISO 8601 in UTC (the parking process's clock)."""
# Where a parked message came from; RabbitMQ keeps its own only in ``x-death``.
ORIGINAL_QUEUE_HEADER: Final = "x-original-queue"
ORIGINAL_EXCHANGE_HEADER: Final = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER: Final = "x-original-routing-key"
ORIGINAL_USER_ID_HEADER: Final = "x-original-user-id"
"""The broker-validated ``user_id`` a parked message was published with; the AMQP
property itself cannot be carried over (the broker checks it against the connection that
moves the message)."""
DEAD_LETTER_HEADERS: Final = frozenset(
    {
        DEAD_LETTER_REASON_HEADER,
        DEAD_LETTER_DETAIL_HEADER,
        DEAD_LETTER_AT_HEADER,
        ORIGINAL_QUEUE_HEADER,
        ORIGINAL_EXCHANGE_HEADER,
        ORIGINAL_ROUTING_KEY_HEADER,
        ORIGINAL_USER_ID_HEADER,
    }
)
"""What parking adds to a message's headers; a message moved back to its queue drops them."""

# Signed messages (``SAGA_SIGNING_KEYS``): an HMAC-SHA256 of
# ``b"saga-sig/v1\n" + JSON([kid, message_id, ts, exchange, routing_key, content_type])
# + b"\n" + body``, the exchange without the namespace.
SIG_HEADER: Final = "x-sig"
"""Space-separated ``v1,<kid>,<base64 HMAC-SHA256>`` entries (several during a rotation)."""
SIG_TS_HEADER: Final = "x-sig-ts"
"""When it was signed, integer Unix seconds."""


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


def reply_key(service: str, saga_name: str, reply: str) -> str:
    """The routing key of a reply on ``events``: ``reply.{service}.{saga}.{reply}``.

    Args:
        service: The participant service that answers (the command's ``service``).
        saga_name: The saga definition the command belongs to.
        reply: The reply's type, ``TaskCompleted`` or ``TaskFailed``.
    """
    return f"reply.{service}.{saga_name}.{reply}"


def start_key(saga_name: str) -> str:
    """The routing key of a ``StartSaga`` on ``events``: ``control.start.{saga}``."""
    return f"control.start.{saga_name}"


@dataclass(frozen=True, slots=True)
class EventsRoute:
    """What a routing key on ``events`` says about its message.

    Attributes:
        type: The message type the key is for, e.g. ``TaskCompleted`` or ``CancelSaga``.
        saga_name: The saga definition the key names (replies and starts), else ``""``.
        service: The answering service (replies on the current keys), else ``""``.
        legacy: True for a key of the scheme before ``reply.``/``control.``.
    """

    type: str
    saga_name: str = ""
    service: str = ""
    legacy: bool = False

    @property
    def control(self) -> bool:
        """A control message (start, signal, cancel, retry, pause, resume), not a reply."""
        return self.type not in _REPLY_TYPES


def events_route(key: str) -> EventsRoute | None:
    """Read a routing key on ``events``; None when it has neither the current nor the old shape.

    Example:
        >>> events_route("reply.payments.orders.TaskCompleted")
        EventsRoute(type='TaskCompleted', saga_name='orders', service='payments', legacy=False)
    """
    # A saga name may hold dots, a service name may not: the saga is what lies between.
    head, _, rest = key.partition(".")
    saga, _, last = rest.rpartition(".")
    if head == "reply":
        service, _, saga = saga.partition(".")
        if last in _REPLY_TYPES and service and saga:
            return EventsRoute(last, saga, service)
    elif head == "control":
        verb, _, saga = rest.partition(".")
        if verb == "start" and saga:
            return EventsRoute("StartSaga", saga)
        if verb in _CONTROL_TYPES and not saga:
            return EventsRoute(_CONTROL_TYPES[verb])
    old_saga, _, old_type = key.rpartition(".")
    if old_saga and old_type in (*_REPLY_TYPES, "StartSaga"):
        return EventsRoute(old_type, old_saga, legacy=True)
    if _CONTROL_TYPES.get(old_saga) == old_type:
        return EventsRoute(old_type, legacy=True)
    return None


def lifecycle_key(saga_name: str, event: str) -> str:
    """The routing key of a ``SagaLifecycle`` announcement: ``{saga}.{event}``."""
    return f"{saga_name}.{event}"


def reply_id(command_message_id: str) -> str:
    """The message id of the reply to a command: ``{command id}:reply``.

    Fixed by the command, so the coordinator recognises a reply sent twice. A
    participant that does not record a retryable failure for its command can
    still answer it twice with different outcomes (a handler run again after a
    retryable failure it was not acked for); the coordinator tells those apart
    by the reply's type.
    """
    return f"{command_message_id}:reply"
