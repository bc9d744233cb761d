"""Gauges whose numbers live in the store, read every few seconds by a task.

OpenTelemetry asks for an observable gauge's value in a synchronous callback,
on the thread that collects (a Prometheus scrape on the event loop, or an OTLP
exporter's own thread): no place to wait for Redis. So a task on the event
loop reads the counts from the store's indexes every ``interval`` and hands
them to the metrics, whose callbacks report the last counts read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import timedelta
from typing import Final, final

from coordinator._tasks import stop_task
from coordinator.ports import CountedSagas
from coordinator.telemetry._metrics import SagaMetrics

__all__ = ["ACTIVE_STATUSES", "StoreSampler"]

_log = logging.getLogger("coordinator.telemetry")

ACTIVE_STATUSES: Final = ("running", "compensating")
"""The statuses ``saga.run.active`` counts: those of sagas not finished."""


@final
class StoreSampler:
    """Reads the store's counts into ``metrics`` every ``interval``, until stopped.

    Args:
        store: Where the counts come from.
        metrics: Where they go.
        names: The saga names to count (the definitions').
        services: The services to count parked sagas for.
        interval: How often. Each read is one pipelined round trip of a few
            ``ZCARD``/``HLEN`` per bucket; a failed read keeps the last counts.
    """

    def __init__(
        self,
        store: CountedSagas,
        metrics: SagaMetrics,
        *,
        names: Collection[str],
        services: Collection[str],
        interval: timedelta = timedelta(seconds=5),
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._names = sorted(names)
        self._services = sorted(services)
        self._interval = interval.total_seconds()
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """Read the counts once."""
        counts = await self._store.counts(self._names, ACTIVE_STATUSES, self._services)
        self._metrics.sampled(counts)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="saga-metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.sample()
                failing = False
            except Exception:  # an outage must not end the loop
                if not failing:  # once per outage, not every interval
                    _log.warning("reading the counts for the metrics failed", exc_info=True)
                failing = True
            await asyncio.sleep(self._interval)
