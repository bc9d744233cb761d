"""A worker's holds on idempotency keys: taken before a handler runs, renewed
while it runs, given back with the reply's record.

Two fences, one inside the other: ``KeyLocks`` keeps this worker's deliveries
of one key in line (a duplicate waits for the first one's record), and the
reply store's hold keeps the service's other workers out. A hold lasts one
lease unless renewed, so it lapses within a lease when its worker dies and
another worker takes the command over.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final, Literal, final

from coordinator._errors import StoreUnavailableError
from coordinator.ports import IdempotencyStore, RecordedReply, Turn
from participants._outages import OutageRetries

__all__ = ["KeyHolds", "KeyLocks", "Renewal"]

_log = logging.getLogger("participants")

# How often a worker asks again for a key that another worker holds.
_WAIT_POLL: Final = timedelta(seconds=0.2)


@final
class KeyLocks:
    """One asyncio lock per idempotency key in use, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


@final
class Renewal:
    """The renewals of one hold, every third of the lease, until ``stop``.

    Most handlers finish before the first renewal, and then cost a timer, not a task.
    """

    def __init__(self, holds: KeyHolds, key: str, lease: timedelta) -> None:
        self._loop = asyncio.get_running_loop()
        self._renewing: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(lease.total_seconds() / 3, self._begin, holds, key)

    def _begin(self, holds: KeyHolds, key: str) -> None:
        self._renewing = self._loop.create_task(holds.renew(key), name=f"hold {key}")

    def stop(self) -> None:
        self._timer.cancel()
        if self._renewing is not None:
            self._renewing.cancel()


@final
class KeyHolds:
    """This worker's holds on the keys of the reply store, as one ``holder``."""

    def __init__(
        self, store: IdempotencyStore, outages: OutageRetries, *, lease: timedelta
    ) -> None:
        self._store = store
        self._outages = outages
        self._lease = lease
        self._holder = uuid.uuid4().hex

    async def wait_for_turn(
        self, key: str, command: str
    ) -> RecordedReply | Literal[Turn.TAKEN, Turn.COMPENSATED]:
        """The reply recorded for the command ``command`` (its message id) or else
        for ``key``, ``Turn.COMPENSATED`` for an action that must be refused, or
        ``Turn.TAKEN`` once this worker holds the key.

        Another worker (another process) may be running the same key, or, for a
        compensation, its action: then wait for its reply rather than run the
        handler a second time. Its hold expires if it dies, and this worker
        takes over.

        Raises:
            Stopping: The worker stops meanwhile.
        """
        loop = asyncio.get_running_loop()
        lease = self._lease.total_seconds()
        while True:
            asked = loop.time()
            found = await self._outages.store(
                f"taking the key {key}",
                lambda: self._store.begin(key, self._holder, self._lease, command=command),
            )
            match found:
                case Turn.TAKEN if loop.time() - asked >= lease:
                    # Frozen (or starved) for a lease since asking: the hold may have
                    # lapsed and the step's compensation begun meanwhile. Ask again.
                    continue
                case Turn.HELD_ELSEWHERE:
                    await self._outages.pause(_WAIT_POLL)
                case RecordedReply() | Turn.TAKEN | Turn.COMPENSATED:
                    return found

    def keep(self, key: str) -> Renewal:
        """Renew the hold on ``key`` until the returned renewal is stopped."""
        return Renewal(self, key, self._lease)

    async def give_back(
        self,
        key: str,
        record: bytes | None,
        renewal: Renewal,
        *,
        what: str,
        command: str | None = None,
    ) -> None:
        """Record ``record`` (None: nothing worth recording) and give the key back,
        tried again through a store outage; the renewals end with it, done or not.
        With ``command``, the record answers that command alone.

        Raises:
            Stopping: The worker stopped while the store was still unavailable.
        """
        try:
            await self._outages.store(
                what, lambda: self._store.finish(key, self._holder, record, command=command)
            )
        finally:
            renewal.stop()

    async def renew(self, key: str) -> None:
        """Renew the hold on ``key`` every third of the lease until cancelled.

        Through a store outage renewals are tried more often; once the outage
        has lasted a lease the hold may have lapsed and another worker may run
        the command as well, which is said once. That is safe for the record:
        ``finish`` records the reply either way and releases only its own hold.
        Renewals use the event loop's time: the lease runs in real time in Redis.
        """
        loop = asyncio.get_running_loop()
        lease = self._lease.total_seconds()
        every = lease / 3
        renewed = loop.time()
        said = False
        while True:
            try:
                held = await self._store.begin(key, self._holder, self._lease)
            except StoreUnavailableError:
                down = loop.time() - renewed
                if down >= lease and not said:
                    said = True
                    _log.error(
                        "the hold on %s may have lapsed: the store has been unavailable for "
                        "%.1fs, longer than the lease; another worker may run it too",
                        key,
                        down,
                    )
                await asyncio.sleep(min(every, 0.5))
                continue
            if held is not Turn.TAKEN:
                _log.warning("lost the hold on %s: another worker may run it too", key)
                return
            renewed, said = loop.time(), False
            await asyncio.sleep(every)
