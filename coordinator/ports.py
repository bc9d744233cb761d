"""The ports the runtime is written against: small protocols, each with an
in-memory implementation (``coordinator.adapters.memory``) and a real one.

Every port method is one atomic operation on the backing server; the runtime
composes them. A port never interprets saga semantics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol

import msgspec

__all__ = [
    "COMPENSATED",
    "Clock",
    "Compensated",
    "Commit",
    "CommitResult",
    "Delivery",
    "Handler",
    "HistoryEntry",
    "IdempotencyStore",
    "OutboxEntry",
    "OutboxStore",
    "ParticipantService",
    "Refusal",
    "Refusals",
    "SagaQueries",
    "SagaStore",
    "Stored",
    "Subscription",
    "TimerStore",
    "Transport",
    "Worker",
]

Exchange = Literal["commands", "events", "lifecycle"]


# -- messaging ---------------------------------------------------------------------


class Delivery(Protocol):
    """One message handed to a consumer. Settle it exactly once."""

    @property
    def message_id(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def delivery_count(self) -> int:
        """1 on first delivery; grows with each redelivery of the same message."""
        ...

    async def ack(self) -> None:
        """Done: the effects of this message are committed."""

    async def requeue(self) -> None:
        """Try again later (a transient failure); counts towards the delivery limit."""

    async def dead_letter(self, reason: str, detail: str) -> None:
        """Never deliverable: park it in the dead-letter queue with the reason."""


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop taking new deliveries and wait for the handlers in flight."""


class Transport(Protocol):
    """Publish to a topic exchange; consume from a queue bound to one."""

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish and return once the broker has taken responsibility for it.

        With ``mandatory`` (commands, replies) a message no queue is bound to
        receive raises; without it (lifecycle events, for whoever listens) it is
        dropped, as a topic exchange does.
        """

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        """Declare ``queue`` bound to ``exchange`` by ``pattern``, without consuming it."""

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        """Declare ``queue`` bound to ``exchange`` by ``pattern`` and consume it."""
        ...


# -- saga storage --------------------------------------------------------------------


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A message to publish once its transition has committed.

    ``created_at`` is when the store committed it, on the store's clock (Redis
    ``TIME``; the memory store's injected clock): the store sets it, whatever
    the runtime passed, and the relay's age threshold is measured on it.
    """

    saga_id: str
    message_id: str
    exchange: Exchange
    routing_key: str
    body: bytes
    created_at: datetime
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a saga's append-only history: what came in, what was decided.

    ``input_id`` is the message id (the dedupe id) of the input, where it has
    one; ``refused`` says why a signal, cancel or retry was not taken (empty
    when the input was applied or only recorded).
    """

    at: datetime
    revision: int
    input: msgspec.Raw
    note: str
    effects: msgspec.Raw
    changed: bool = True
    input_id: str = ""
    """The message id of the input that made this entry."""
    refused: str = ""
    """Why the input was refused; empty when it was applied."""
    status_before: str | None = None
    """The saga's status before the input; ``None`` when the input started it (and in
    entries written before this field existed)."""
    status_after: str | None = None
    """The saga's status after the input (the same when it changed nothing)."""


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    state: bytes
    revision: int


class Commit(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one input does to one saga, written atomically or not at all.

    Attributes:
        expected_revision: The revision loaded (``-1``: the saga must not exist).
        dedupe_id: Identity of the input; a second commit with it is a duplicate.
        timers_due: Timers to add or move, name to due time.
        timers_cancelled: Timers to remove.
    """

    saga_id: str
    name: str
    status: str
    expected_revision: int
    revision: int
    state: bytes
    dedupe_id: str
    history: HistoryEntry
    outbox: Sequence[OutboxEntry] = ()
    timers_due: Mapping[str, datetime] = msgspec.field(default_factory=dict)
    timers_cancelled: Sequence[str] = ()


CommitResult = Literal["committed", "conflict", "duplicate"]


class SagaStore(Protocol):
    """Saga state, history, outbox, dedupe and timers, one atomic commit per input."""

    async def load(self, saga_id: str) -> Stored | None: ...

    async def commit(self, commit: Commit) -> CommitResult: ...

    async def record(self, saga_id: str, entry: HistoryEntry, *, timer: str | None = None) -> None:
        """Append to the history an input that changed nothing (duplicate, late).

        ``timer`` is the timer that input consumed, if it was a stale ``TimerFired``.
        """


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a coordinator refused to start a saga, kept for the client that asked.

    ``sent_at`` is the refused message's own, so a client recognises the
    answer to its start and not to an older one with the same saga id.
    """

    reason: str
    detail: str
    sent_at: datetime


class Refusals(Protocol):
    """Refused starts, written only on refusal (off the hot path), kept an hour."""

    async def record_refusal(self, saga_id: str, refusal: Refusal) -> None: ...

    async def refusal(self, saga_id: str) -> Refusal | None: ...


class OutboxStore(Protocol):
    async def pending(self, older_than: timedelta, limit: int) -> Sequence[OutboxEntry]:
        """Entries committed at least ``older_than`` ago and not yet marked done, oldest
        first. The age is judged on the store's clock, the one it stamped them with,
        so a replica's own clock, ahead or behind, changes nothing."""
        ...

    async def done(self, entries: Sequence[OutboxEntry]) -> None: ...


class TimerStore(Protocol):
    async def due(self, now: datetime, limit: int) -> Sequence[tuple[str, str]]:
        """``(saga_id, timer)`` pairs whose time has come, oldest first."""
        ...


class SagaQueries(Protocol):
    """The read side, for the CLI, the API and the harness."""

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]: ...

    async def find(
        self, *, name: str | None = None, status: str | None = None, limit: int = 100
    ) -> Sequence[str]: ...


Compensated = Literal["compensated"]
COMPENSATED: Final[Compensated] = "compensated"


class IdempotencyStore(Protocol):
    """A participant's record of the replies it gave, by idempotency key.

    Each key is fenced across worker processes: a command redelivered to a
    second worker while the first still runs it waits for the first one's
    reply instead of running the handler again. Two calls per command.

    The two keys of one step, ``<saga>:<step>:action`` and
    ``<saga>:<step>:compensation``, are fenced against each other too, so that
    no action runs after its undo: once the compensation's key has been taken
    (a tombstone records it, for as long as replies are kept), ``begin`` of the
    action refuses it (``COMPENSATED``) unless the action's reply was recorded
    before; and the compensation waits (False) while the action's key is held.
    Both checks are atomic with taking the key. Other keys are fenced alone.

    An outage of the backing server raises ``StoreUnavailableError``: the call
    may be made again, unchanged, once it is back.
    """

    async def begin(self, key: str, holder: str, ttl: timedelta) -> bytes | bool | Compensated:
        """The reply recorded for ``key``; else True if ``holder`` now holds the key
        (run the handler; the hold expires after ``ttl``), False if another does
        (or, for a compensation, its action is held), ``COMPENSATED`` for an
        action whose compensation has begun. The holder calls it again to renew
        its hold while the handler runs."""
        ...

    async def finish(self, key: str, holder: str, reply: bytes | None) -> None:
        """Record ``reply`` (None: nothing worth recording) and give the key back."""


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


# -- participants, seen from the in-memory harness ------------------------------------


class Worker(Protocol):
    """Something that consumes until stopped: a participant's worker."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ParticipantService(Protocol):
    """A participant service the harness can run beside the coordinator.

    ``participants.Service`` is one. The coordinator side knows this protocol,
    never the SDK, so the two packages do not import each other.
    """

    @property
    def name(self) -> str: ...

    def worker(
        self, *, transport: Transport, idempotency: IdempotencyStore, clock: Clock
    ) -> Worker:
        """A worker that handles this service's commands on ``transport``."""
        ...
