"""A clock that follows Redis ``TIME``, so that every replica agrees on "now"."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from coordinator._tasks import stop_task

__all__ = ["RedisClock"]

_log = logging.getLogger("coordinator.redis")


@final
class RedisClock:
    """Local time corrected by its offset from Redis ``TIME``.

    Timers are scheduled and fired by whichever replica handles the saga; with
    every replica reading this clock they agree on "now" even when their own
    clocks drift. The offset is refreshed every ``refresh`` seconds.
    """

    def __init__(self, redis: Redis | RedisCluster, *, refresh: float = 30.0) -> None:
        self._redis: Any = redis
        self._refresh = refresh
        self._offset = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.create_task(self._keep_in_sync(), name="redis-clock")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    async def sync(self) -> None:
        before = time.time()
        seconds, micros = await self._redis.time()
        after = time.time()
        self._offset = seconds + micros / 1e6 - (before + after) / 2

    async def _keep_in_sync(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.sync()
            except Exception:  # keep the last offset; Redis may be restarting
                _log.warning("could not read Redis TIME; keeping the last clock offset")

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, UTC)

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(delay.total_seconds())
