"""In-memory saga store: the same contract as the Redis store, in dicts.

Each method runs without awaiting in between, so on one event loop every commit
is atomic, which is what the Lua script gives the Redis store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import final

import msgspec

from coordinator.adapters.memory._clock import SystemClock
from coordinator.core import SagaState
from coordinator.ports import (
    Clock,
    Commit,
    CommitResult,
    HistoryEntry,
    OutboxEntry,
    Refusal,
    SagaCounts,
    Stored,
    pinned,
)

__all__ = ["MemorySagaStore"]


@final
class MemorySagaStore:
    """Implements ``SagaStore``, ``OutboxStore``, ``TimerStore``, ``SagaQueries``,
    ``SagaVersions``, ``IdleSagas``, ``ParkedSagas``, ``CountedSagas`` and
    ``Refusals`` (kept until the store is dropped: a test's lifetime).

    Args:
        clock: The store's own clock, as Redis ``TIME`` is the Redis store's: outbox
            entries are stamped with it at commit and their age is judged on it.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._states: dict[str, Stored] = {}
        self._index: dict[str, tuple[str, str]] = {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._seen: dict[str, set[str]] = {}
        self._outbox: dict[tuple[str, str], OutboxEntry] = {}
        self._timers: dict[tuple[str, str], datetime] = {}
        self._refusals: dict[str, Refusal] = {}
        self._changed: dict[str, datetime] = {}
        self._started: dict[str, datetime] = {}
        # The parked index: service -> saga id -> when it parked (insertion order).
        self._parked: dict[str, dict[str, datetime]] = {}
        self._parked_on: dict[str, frozenset[str]] = {}

    async def load(self, saga_id: str) -> Stored | None:
        return self._states.get(saga_id)

    async def commit(self, commit: Commit) -> CommitResult:
        saga_id = commit.saga_id
        current = self._states.get(saga_id)
        if commit.dedupe_id in self._seen.get(saga_id, ()):
            return "duplicate"
        if (current.revision if current else -1) != commit.expected_revision:
            return "conflict"
        self._states[saga_id] = Stored(state=commit.state, revision=commit.revision)
        self._index[saga_id] = (commit.name, commit.status)
        self._changed[saga_id] = self._clock.now()
        if current is None:  # to the millisecond, as Redis scores it
            at = self._changed[saga_id]
            self._started[saga_id] = at.replace(microsecond=at.microsecond // 1000 * 1000)
        self._seen.setdefault(saga_id, set()).add(commit.dedupe_id)
        self._history.setdefault(saga_id, []).append(commit.history)
        now = self._clock.now()
        for entry in commit.outbox:
            stamped = msgspec.structs.replace(entry, created_at=now)
            self._outbox[(saga_id, entry.message_id)] = stamped
        for name in commit.timers_cancelled:
            self._timers.pop((saga_id, name), None)
        for name, due in commit.timers_due.items():
            self._timers[(saga_id, name)] = due
        self._index_parked(saga_id, frozenset(commit.parked), now)
        return "committed"

    def _index_parked(self, saga_id: str, parked: frozenset[str], now: datetime) -> None:
        before = self._parked_on.get(saga_id, frozenset())
        for service in before - parked:
            self._parked.get(service, {}).pop(saga_id, None)
        for service in parked - before:
            self._parked.setdefault(service, {})[saga_id] = now
        if parked:
            self._parked_on[saga_id] = parked
        else:
            self._parked_on.pop(saga_id, None)

    async def parked(self, service: str, limit: int = 100) -> Sequence[str]:
        return list(self._parked.get(service, {}))[:limit]

    async def parked_count(self, service: str) -> int:
        return len(self._parked.get(service, {}))

    async def record(self, saga_id: str, entry: HistoryEntry, *, timer: str | None = None) -> None:
        self._history.setdefault(saga_id, []).append(entry)
        if timer is not None:
            self._timers.pop((saga_id, timer), None)

    async def pending(self, older_than: timedelta, limit: int) -> Sequence[OutboxEntry]:
        cutoff = self._clock.now() - older_than
        entries = sorted(
            (e for e in self._outbox.values() if e.created_at <= cutoff),
            key=lambda e: e.created_at,
        )
        return entries[:limit]

    async def done(self, entries: Sequence[OutboxEntry]) -> None:
        for entry in entries:
            self._outbox.pop((entry.saga_id, entry.message_id), None)

    async def due(self, now: datetime, limit: int) -> Sequence[tuple[str, str, datetime]]:
        ready = sorted((due, key) for key, due in self._timers.items() if due <= now)
        return [(saga_id, timer, due) for due, (saga_id, timer) in ready[:limit]]

    async def counts(
        self, names: Collection[str], statuses: Collection[str], services: Collection[str]
    ) -> SagaCounts:
        by_status = {name: dict.fromkeys(statuses, 0) for name in names}
        for name, status in self._index.values():
            if name in by_status and status in by_status[name]:
                by_status[name][status] += 1
        parked = {service: len(self._parked.get(service, {})) for service in services}
        return SagaCounts(by_status=by_status, parked=parked, outbox=len(self._outbox))

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        return list(self._history.get(saga_id, ()))

    async def started(
        self, *, before: tuple[datetime, str] | None = None, limit: int = 100
    ) -> Sequence[tuple[str, datetime]]:
        rows = sorted(((at, sid) for sid, at in self._started.items()), reverse=True)
        if before is not None:
            rows = [row for row in rows if row < before]
        return [(sid, at) for at, sid in rows[:limit]]

    async def find(
        self, *, name: str | None = None, status: str | None = None, limit: int = 100
    ) -> Sequence[str]:
        found = [
            saga_id
            for saga_id, (n, s) in self._index.items()
            if (name is None or n == name) and (status is None or s == status)
        ]
        return found[:limit]

    async def finished(
        self,
        since: datetime,
        *,
        names: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Sequence[tuple[str, datetime]]:
        found = sorted(
            (changed, saga_id)
            for saga_id, changed in self._changed.items()
            if changed >= since
            and self._index[saga_id][1] in SagaState.TERMINAL
            and (names is None or self._index[saga_id][0] in names)
        )
        return [(saga_id, changed) for changed, saga_id in found[:limit]]

    async def versions_in_flight(self) -> Mapping[tuple[str, int], int]:
        return Counter(
            pinned(self._states[saga_id].state)
            for saga_id, (_name, status) in self._index.items()
            if status not in SagaState.TERMINAL
        )

    async def idle(
        self,
        statuses: Collection[str],
        older_than: timedelta,
        *,
        names: Collection[str] | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[str, datetime]]:
        cutoff = self._clock.now() - older_than
        found = sorted(
            (changed, saga_id)
            for saga_id, changed in self._changed.items()
            if changed <= cutoff
            and self._index[saga_id][1] in statuses
            and (names is None or self._index[saga_id][0] in names)
        )
        return [(saga_id, changed) for changed, saga_id in found[:limit]]

    async def record_refusal(self, saga_id: str, refusal: Refusal) -> None:
        self._refusals[saga_id] = refusal

    async def refusal(self, saga_id: str) -> Refusal | None:
        return self._refusals.get(saga_id)

    def next_timer(self) -> datetime | None:
        """When the earliest timer is due: the virtual clock jumps there."""
        return min(self._timers.values(), default=None)

    async def outbox_size(self) -> int:
        return len(self._outbox)

    async def timer_count(self) -> int:
        return len(self._timers)
