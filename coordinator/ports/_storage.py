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
    "CountedSagas",
    "HistoryEntry",
    "IdleSagas",
    "OutboxEntry",
    "OutboxStore",
    "ParkedSagas",
    "Refusal",
    "Refusals",
    "SagaCounts",
    "SagaQueries",
    "SagaStore",
    "SagaVersions",
    "StartedSagas",
    "Stored",
    "TimerStore",
    "pinned",
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

    ``at`` is the input's time (the time the decision was made on) and
    ``version`` the definition version that decided it, so the history alone
    says when and under which definition each thing happened (``saga replay``
    re-runs it). ``input_id`` is the message id (the dedupe id) of the input,
    where it has one; ``refused`` says why a signal, cancel or retry was not
    taken (empty when the input was applied or only recorded).
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
    version: int = 0
    """The version of the definition that decided it (a saga never changes version);
    0 in entries written before this field existed (versions start at 1)."""


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    state: bytes
    revision: int


class _Pinned(msgspec.Struct):
    name: str
    version: int


_pinned_decoder = msgspec.json.Decoder(_Pinned)


def pinned(state: bytes) -> tuple[str, int]:
    """The ``(name, version)`` of the definition a stored state runs on, decoded
    alone (the rest of the state is skipped): which definition reads the rest."""
    found = _pinned_decoder.decode(state)
    return found.name, found.version


class Commit(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one input does to one saga, written atomically or not at all.

    Attributes:
        expected_revision: The revision loaded (``-1``: the saga must not exist).
        dedupe_id: Identity of the input; a second commit with it is a duplicate.
        token: Identity of this commit (fresh for each decision): the very same
            commit sent again (a client library retrying after a timeout) is
            answered ``committed``; the same input committed by another replica
            from the same revision (both fired one due timer) is a ``duplicate``.
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
    token: str = ""
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
    async def due(self, now: datetime, limit: int) -> Sequence[tuple[str, str, datetime]]:
        """``(saga_id, timer, due time)`` of the timers whose time has come, oldest first
        (the due time to the millisecond on Redis, which scores timers in ms)."""
        ...


class SagaQueries(Protocol):
    """The read side, for the CLI, the API and the harness."""

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]: ...

    async def find(
        self, *, name: str | None = None, status: str | None = None, limit: int = 100
    ) -> Sequence[str]: ...

    async def finished(
        self,
        since: datetime,
        *,
        names: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Sequence[tuple[str, datetime]]:
        """``(saga_id, when it ended)`` of the sagas that ended at ``since`` or later
        and are still kept (``retention``), oldest first; at most ``limit`` (None: all).

        The time is the store's clock at the saga's last transition. ``names``
        narrows it to those definitions; None: every definition.
        """
        ...


class StartedSagas(Protocol):
    """Sagas by when they started, newest first: the REST API's listing.

    The order, ``(started, saga_id)`` descending, never changes for a saga (a
    transition does not move it), so paging through it with a cursor meets each
    saga once while sagas keep changing; sagas started meanwhile are before the
    first page, not in the ones after.
    """

    async def started(
        self, *, before: tuple[datetime, str] | None = None, limit: int = 100
    ) -> Sequence[tuple[str, datetime]]:
        """``(saga_id, started)`` of up to ``limit`` sagas ordered below ``before`` (a
        ``(started, saga_id)`` from a previous page; None: from the newest).

        ``started`` is the store's clock at the saga's first commit, to the
        millisecond. Sagas no longer kept (retention) are left out.
        """
        ...


class SagaVersions(Protocol):
    """Which definition versions the sagas still in flight run on, read at start-up."""

    async def versions_in_flight(self) -> Mapping[tuple[str, int], int]:
        """How many sagas not yet ended (running or compensating) run on each
        ``(name, version)``. It reads every such saga: a start-up check, not a
        hot path."""
        ...


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


class SagaCounts(msgspec.Struct, frozen=True, kw_only=True):
    """How many sagas are where, for the metrics' gauges (``CountedSagas.counts``).

    Attributes:
        by_status: Sagas per definition name and status, for the names and statuses asked.
        parked: Sagas parked behind each service's open breaker.
        outbox: Messages committed and not yet marked published, every saga's.
    """

    by_status: dict[str, dict[str, int]]
    parked: dict[str, int]
    outbox: int


class CountedSagas(Protocol):
    """Counts from the store's own indexes: no saga is read to make them."""

    async def counts(
        self, names: Collection[str], statuses: Collection[str], services: Collection[str]
    ) -> SagaCounts:
        """Every ``name`` x ``status`` and every service of ``services`` is in the
        answer, 0 where nothing is."""
        ...
