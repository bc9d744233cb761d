"""Clocks: the system's, and a virtual one that jumps to the next thing due."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import final

__all__ = ["SystemClock", "VirtualClock"]


@final
class SystemClock:
    """Wall-clock UTC time and real sleeps: the one system clock, the
    participants' default and the memory store's."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(delay.total_seconds())


@final
class VirtualClock:
    """Time that moves only when told, as trio's ``MockClock`` does.

    ``sleep`` parks the caller until :meth:`advance_to` passes its wake-up time,
    so a saga that waits an hour is tested in microseconds.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, delay: timedelta) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        wake = self._now + delay
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """Tasks parked in :meth:`sleep`."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    def next_wake(self) -> datetime | None:
        return self._sleepers[0][0] if self._sleepers else None

    def advance_to(self, when: datetime) -> None:
        """Move time forward (never back) and wake every sleeper now due."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            *_, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def advance(self, delta: timedelta) -> None:
        self.advance_to(self._now + delta)
