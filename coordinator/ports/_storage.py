"""Saga storage ports: state, history, outbox, timers, indexes and refusals."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

import msgspec

from coordinator.ports._messaging import Exchange

__all__ = [
    "Commit",
    "CommitResult",
    "HistoryEntry",
    "IdleSagas",
    "OutboxEntry",
    "OutboxStore",
    "ParkedSagas",
    "Refusal",
    "Refusals",
    "SagaQueries",
    "SagaStore",
    "Stored",
    "TimerStore",
]


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
