"""The ports the runtime is written against: small protocols, each with an
in-memory implementation (``coordinator.adapters.memory``) and a real one.

Every port method is one atomic operation on the backing server; the runtime
composes them. A port never interprets saga semantics.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeAlias, final

import msgspec

from contracts import routes

__all__ = [
    "BreakerEvent",
    "BreakerOp",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
    "Clock",
    "Commit",
    "CommitResult",
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Handler",
    "HistoryEntry",
    "IdempotencyStore",
    "IdleSagas",
    "OutboxEntry",
    "OutboxStore",
    "ParkedSagas",
    "ParticipantService",
    "RecordedReply",
    "Refusal",
    "Refusals",
    "SagaQueries",
    "SagaStore",
    "Stored",
    "Subscription",
    "TimerStore",
    "Transport",
    "Turn",
    "Worker",
]

Exchange: TypeAlias = routes.Exchange


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


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message parked in a queue's dead letters, for an operator to look at.

    Attributes:
        queue: The queue it was dead-lettered from (without a namespace).
        message_id: Its message id.
        body: The body, unchanged.
        headers: Its headers, plus ``x-death-reason`` and ``x-death-detail``
            (`contracts.routes`) when the transport parked it.
        reason: A short machine code, e.g. ``malformed_json``, or
            ``delivery_limit`` for a message delivered too often.
        detail: What was wrong, for a human.
        exchange: The exchange it was published to.
        routing_key: The routing key it was published with.
        delivery_count: How many times it had been delivered, where the
            transport knows (None: RabbitMQ does not keep it).
    """

    queue: str
    message_id: str
    body: bytes
    headers: Mapping[str, str]
    reason: str
    detail: str
    exchange: str
    routing_key: str
    delivery_count: int | None = None

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it was parked (header ``x-death-at``), if that is known."""
        stamp = self.headers.get(routes.DEAD_LETTER_AT_HEADER)
        if not stamp:
            return None
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            return None


class DeadLetters(Protocol):
    """The dead letters of each queue: read them, drop them, move them back.

    Oldest first. A message moved back (`redrive`) goes to the end of the
    queue it was dead-lettered from, and only there, as a new delivery
    (``delivery_count`` 1) with its own headers, its message id and body.
    """

    async def list(
        self, queue: str, limit: int = 100, *, remove: bool = False
    ) -> Sequence[DeadLetter]:
        """At most ``limit`` dead letters of ``queue``; taken out of them with ``remove``.

        A queue that was never declared has none.
        """
        ...

    async def redrive(
        self, queue: str, message_ids: Collection[str] | None = None, *, limit: int = 100
    ) -> Sequence[DeadLetter]:
        """Move dead letters of ``queue`` back to it: those of ``message_ids``, or all.

        Returns:
            The dead letters moved (at most ``limit``), oldest first. The
            others keep their place.

        Raises:
            UnroutableError: If ``queue`` no longer exists. A letter is taken
                out only once it was moved, so none is lost.
        """
        ...

    async def purge(self, queue: str) -> int:
        """Drop every dead letter of ``queue``; returns how many were dropped.

        A queue that was never declared has none to drop.
        """
        ...

    async def exists(self, queue: str) -> bool:
        """Whether ``queue`` was declared (it has a place for dead letters, empty or not)."""
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
    parked: Collection[str] = ()
    """The services the saga waits for after this commit (a step parked behind an open
    circuit breaker): the store keeps an index of parked sagas per service with it."""


CommitResult = Literal["committed", "conflict", "duplicate"]


class SagaStore(Protocol):
    """Saga state, history, outbox, dedupe and timers, one atomic commit per input."""

    async def load(self, saga_id: str) -> Stored | None: ...

    async def commit(self, commit: Commit) -> CommitResult: ...

    async def record(self, saga_id: str, entry: HistoryEntry, *, timer: str | None = None) -> None:
        """Append to the history an input that changed nothing (duplicate, late).

        ``timer`` is the timer that input consumed, if it was a stale ``TimerFired``.
        """


class ParkedSagas(Protocol):
    """The index of sagas parked behind a service's open breaker, kept by ``commit``."""

    async def parked(self, service: str, limit: int = 100) -> Sequence[str]:
        """Ids of sagas waiting for ``service``, longest parked first."""
        ...

    async def parked_count(self, service: str) -> int: ...


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


class IdleSagas(Protocol):
    """Sagas by how long they went without a transition, for ``saga stuck``."""

    async def idle(
        self,
        statuses: Collection[str],
        older_than: timedelta,
        *,
        names: Collection[str] | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[str, datetime]]:
        """``(saga_id, last transition)`` of the sagas in one of ``statuses`` whose
        last transition is at least ``older_than`` old, oldest first.

        Ages are judged on the store's clock, the one that stamped the
        transitions. ``names`` narrows it to those definitions (and spares the
        Redis store looking for their index keys); None: every definition.
        """
        ...


class Turn(enum.Enum):
    """What ``IdempotencyStore.begin`` says when no reply is recorded for the key."""

    TAKEN = "taken"
    """The caller holds the key now (taken, or its hold renewed): run the handler."""
    HELD_ELSEWHERE = "held elsewhere"
    """Another holder has the key or, for a compensation, its action's key: ask again."""
    COMPENSATED = "compensated"
    """An action whose step's compensation has begun: refuse it, never run it."""


@final
class RecordedReply(msgspec.Struct, frozen=True):
    """The reply recorded for the key, as ``finish`` stored it: send it again, run nothing."""

    body: bytes


class IdempotencyStore(Protocol):
    """A participant's record of the replies it gave, by idempotency key.

    Each key is fenced across worker processes: a command redelivered to a
    second worker while the first still runs it waits for the first one's
    reply instead of running the handler again. Two calls per command.

    The two keys of one step, ``<saga>:<step>:action`` and
    ``<saga>:<step>:compensation``, are fenced against each other too, so that
    no action runs after its undo: once the compensation's key has been taken
    (a tombstone records it, for as long as replies are kept), ``begin`` of the
    action refuses it (``Turn.COMPENSATED``) unless the action's reply was
    recorded before; and the compensation waits (``Turn.HELD_ELSEWHERE``) while
    the action's key is held. Both checks are atomic with taking the key. Other
    keys are fenced alone.

    An outage of the backing server raises ``StoreUnavailableError``: the call
    may be made again, unchanged, once it is back.
    """

    async def begin(self, key: str, holder: str, ttl: timedelta) -> RecordedReply | Turn:
        """The reply recorded for ``key``; else whose turn it is: ``Turn.TAKEN`` if
        ``holder`` now holds the key (run the handler; the hold expires after
        ``ttl``), ``Turn.HELD_ELSEWHERE`` if another does (or, for a
        compensation, its action is held), ``Turn.COMPENSATED`` for an action
        whose compensation has begun. The holder calls it again to renew its
        hold while the handler runs."""
        ...

    async def finish(self, key: str, holder: str, reply: bytes | None) -> None:
        """Record ``reply`` (None: nothing worth recording) and give the key back."""


# -- circuit breakers -----------------------------------------------------------------

BreakerState = Literal["closed", "open", "half-open"]

BreakerOp = Literal["refresh", "failure", "success", "probe", "open", "close", "reset"]
"""What ``BreakerStore.apply`` does, atomically, on one service's shared breaker:

* ``refresh``: nothing but the automatic move from open to half-open once
  ``reset_timeout`` has passed (every op does that first);
* ``failure``: counts a failure when closed (opens it at ``fail_max``), reopens it
  when half-open; ignored while open (a late reply to a command sent before);
* ``success``: resets the count when closed, counts toward closing when half-open;
* ``probe``: takes one of the half-open breaker's probes, if any is left;
* ``open``: an operator opens it and holds it open (no half-open) until
  ``close`` or ``reset``;
* ``close``: an operator closes it (counts reset);
* ``reset``: an operator hands it back to the automatic rules: counts reset, the
  hold released (a held breaker stays open and half-opens after ``reset_timeout``).
"""


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The thresholds of one service's breaker (``coordinator.Breaker`` resolved).

    Attributes:
        fail_max: Consecutive failures that open it.
        reset_timeout: How long it stays open before it half-opens.
        success_threshold: Successes in half-open that close it.
        probes: Commands let through while half-open, across every replica.
        probe_lease: How long a probe taken holds its place in ``probes``; one
            never used (its saga moved on) is given back after it.
    """

    fail_max: int = 5
    reset_timeout: timedelta = timedelta(seconds=30)
    success_threshold: int = 1
    probes: int = 1
    probe_lease: timedelta = timedelta(seconds=30)


class BreakerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One service's shared breaker as the store holds it.

    ``granted`` is set by ``apply("probe")`` only: whether a probe was taken.
    ``held`` says an operator opened it (it does not half-open by itself);
    ``half_open_at`` when an open breaker not held lets probes through.
    """

    service: str
    state: BreakerState = "closed"
    failures: int = 0
    successes: int = 0
    opened_at: datetime | None = None
    held: bool = False
    probes: int = 0
    granted: bool = False
    half_open_at: datetime | None = None


class BreakerEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a service's breaker event log: a transition, or an operator's act."""

    at: datetime
    service: str
    old: BreakerState
    new: BreakerState
    reason: str
    by: str = ""


class BreakerStore(Protocol):
    """Circuit breakers shared by every coordinator replica, one per service.

    Every ``apply`` is one atomic step on the backing server, timed by its clock
    (Redis ``TIME``), so replicas racing on one breaker are serialised there;
    each transition is appended to the service's bounded event log.
    """

    async def apply(
        self,
        service: str,
        op: BreakerOp,
        policy: BreakerPolicy,
        *,
        reason: str = "",
        by: str = "",
    ) -> BreakerSnapshot:
        """Do ``op`` (see :data:`BreakerOp`) and return the breaker as it is after it."""
        ...

    async def snapshot(self, services: Collection[str]) -> Mapping[str, BreakerSnapshot]:
        """The breakers of ``services`` as stored (closed for one never used)."""
        ...

    async def known(self) -> Sequence[str]:
        """Every service whose breaker was ever acted on (``apply``), by a coordinator
        (which refreshes each of its services at start) or an operator."""
        ...

    async def events(self, service: str, limit: int = 20) -> Sequence[BreakerEvent]:
        """The latest events of ``service``'s breaker, newest first."""
        ...

    async def lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take ``name`` for ``ttl`` unless another holder has it (a sweep of one replica)."""
        ...


class Clock(Protocol):
    """Where "now" comes from, and how to wait: injected, so tests run on virtual time."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, delay: timedelta) -> None:
        """Wait ``delay`` of this clock's time."""


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
