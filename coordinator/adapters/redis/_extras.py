"""The participants' reply store, and a clock that follows Redis ``TIME``."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

__all__ = ["RedisClock", "RedisIdempotencyStore", "connect_redis"]

_log = logging.getLogger("coordinator.redis")


def connect_redis(url: str) -> Redis | RedisCluster:
    """A client for ``url``; ``redis+cluster://`` gives a cluster client."""
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    return Redis.from_url(url)


@final
class RedisIdempotencyStore:
    """Replies a participant gave, by idempotency key, kept for ``ttl``."""

    def __init__(self, redis: Redis | RedisCluster, *, namespace: str, ttl: timedelta) -> None:
        self._redis: Any = redis
        self._prefix = f"{namespace}:reply:"
        self._claim_prefix = f"{namespace}:claim:"
        # Delete the claim only if it is still ours: it may have expired and been retaken.
        self._release = redis.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
        )
        self._ttl = int(ttl.total_seconds())

    async def get(self, key: str) -> bytes | None:
        found: bytes | None = await self._redis.get(self._prefix + key)
        return found

    async def put(self, key: str, reply: bytes) -> None:
        await self._redis.set(self._prefix + key, reply, ex=self._ttl)

    async def claim(self, key: str, holder: str, ttl: timedelta) -> bool:
        taken = await self._redis.set(
            self._claim_prefix + key, holder, nx=True, px=int(ttl.total_seconds() * 1000)
        )
        if taken:
            return True
        return bool(await self._redis.get(self._claim_prefix + key) == holder.encode())

    async def release(self, key: str, holder: str) -> None:
        await self._release(keys=[self._claim_prefix + key], args=[holder])


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
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
