"""Publishing the outbox: right after each commit, and later for what was left.

Entries are published concurrently (their confirms are awaited together) and
marked done in batches. A crash between commit and publish, or a broker error,
leaves entries in the outbox; the relay publishes those once they are older
than ``relay_after``, from any replica. Consumers dedupe, so a message
published twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import final

from coordinator._errors import SealedDataError
from coordinator._sealing import Sealer
from coordinator._tasks import stop_task
from coordinator.ports import Clock, OutboxEntry, OutboxStore, Transport
from coordinator.telemetry import Telemetry

__all__ = ["OutboxPublisher"]

_log = logging.getLogger("coordinator")
# Each flush sends two commands per bucket it touches: every 20 ms, they
# outnumbered the commits themselves.
_DONE_BATCH_SECONDS = 0.2


@final
class OutboxPublisher:
    def __init__(
        self,
        transport: Transport,
        store: OutboxStore,
        clock: Clock,
        *,
        relay_after: timedelta,
        telemetry: Telemetry,
        sealer: Sealer | None = None,
    ) -> None:
        self._sealer = sealer if sealer is not None else Sealer(None, {})
        self._transport = transport
        self._telemetry = telemetry
        self._store = store
        self._clock = clock
        self._relay_after = relay_after
        self._done: list[OutboxEntry] = []
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Mark entries done in batches from now on (without it: one call per commit)."""
        self._flusher = asyncio.create_task(self._flush_forever(), name="saga-outbox-done")

    async def stop(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            await stop_task(flusher)
        await self._flush()

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Publish committed entries; what fails stays in the outbox for the relay."""
        if not entries:
            return
        if len(entries) == 1:  # the common case: no task needed
            results = [await self._publish_one(entries[0])]
        else:
            results = await asyncio.gather(*(self._publish_one(e) for e in entries))
        sent = [entry for entry, ok in zip(entries, results, strict=True) if ok]
        if not sent:
            return
        if self._flusher is None:
            await self._store.done(sent)
        else:
            # The relay only takes entries older than ``relay_after``: far longer
            # than an entry waits here to be marked done.
            self._done.extend(sent)

    async def relay(self, limit: int = 256) -> int:
        """Publish entries left behind; returns how many were found."""
        # The age is the store's to judge, on the clock it stamped the entries with.
        entries = await self._store.pending(self._relay_after, limit)
        await self.publish([e for e in map(self._opened, entries) if e is not None])
        return len(entries)

    def _opened(self, entry: OutboxEntry) -> OutboxEntry | None:
        """The entry with its body opened (the store holds sensitive sagas' sealed)."""
        try:
            return self._sealer.open_outbox(entry)
        except SealedDataError as exc:  # left in the outbox: said at every poll until fixed
            _log.error("outbox entry %s not published: %s", entry.message_id, exc)
            return None

    async def _publish_one(self, entry: OutboxEntry) -> bool:
        try:
            with self._telemetry.sending(entry) as headers:
                await self._transport.publish(
                    entry.exchange,
                    entry.routing_key,
                    entry.body,
                    message_id=entry.message_id,
                    headers=entry.headers if headers is None else headers,
                    mandatory=entry.exchange != "lifecycle",
                )
        except Exception:  # the transition is committed; the relay publishes it later
            _log.warning("publish of %s failed; left in the outbox", entry.message_id)
            return False
        return True

    async def _flush(self) -> None:
        batch, self._done = self._done, []
        if batch:
            try:
                await self._store.done(batch)
            except Exception:  # harmless: the relay republishes them and consumers dedupe
                _log.warning("could not mark %d outbox entries done", len(batch), exc_info=True)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(_DONE_BATCH_SECONDS)
            await self._flush()
