"""The participants' reply store, and a clock that follows Redis ``TIME``."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

from coordinator.adapters.redis._batch import Batcher, LuaScript

__all__ = ["RedisClock", "RedisIdempotencyStore", "connect_redis"]

_log = logging.getLogger("coordinator.redis")


def connect_redis(url: str) -> Redis | RedisCluster:
    """A client for ``url``; ``redis+cluster://`` gives a cluster client."""
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    client = Redis.from_url(url)
    if HIREDIS_AVAILABLE:
        pool = client.connection_pool
        pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


class _HiredisPacking(AbstractConnection):
    # redis-py's asyncio connections pack commands in Python even when hiredis
    # is installed (redis/redis-py#4176); its synchronous ones use hiredis's
    # packer, which is several times faster for a commit's thirty arguments.
    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)
        return packed


def _packing_with_hiredis(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls`` (plain TCP, TLS or Unix socket) packing its commands with hiredis."""
    return type(f"Hiredis{cls.__name__}", (_HiredisPacking, cls), {})


# KEYS: reply, claim. ARGV: holder, ttl_ms. The reply, or 1 (ours now), or 0 (someone else's).
_BEGIN = """
local reply = redis.call('GET', KEYS[1])
if reply then return reply end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: reply, claim. ARGV: holder, reply_ttl_s, reply, has_reply. The claim is deleted
# only if it is still ours: it may have expired and been taken by another worker.
_FINISH = """
if ARGV[4] == '1' then redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


@final
class RedisIdempotencyStore:
    """Replies a participant gave, by idempotency key, kept for ``ttl``."""

    def __init__(self, redis: Redis | RedisCluster, *, namespace: str, ttl: timedelta) -> None:
        self._redis: Any = redis
        self._prefix = f"{namespace}:reply:"
        self._claim_prefix = f"{namespace}:claim:"
        # A worker runs many commands at once: their calls share pipelines.
        self._batch = Batcher(redis)
        self._begin = LuaScript(redis, _BEGIN)
        self._finish = LuaScript(redis, _FINISH)
        self._ttl = int(ttl.total_seconds())

    async def begin(self, key: str, holder: str, ttl: timedelta) -> bytes | bool:
        found = await self._batch.run(
            self._begin, self._keys(key), [holder, int(ttl.total_seconds() * 1000)]
        )
        if isinstance(found, bytes):
            return found
        return bool(found)

    async def finish(self, key: str, holder: str, reply: bytes | None) -> None:
        has_reply = 1 if reply is not None else 0
        args: list[str | int | bytes] = [holder, self._ttl, reply or b"", has_reply]
        await self._batch.run(self._finish, self._keys(key), args)

    def _keys(self, key: str) -> list[str]:
        # One hash tag per key: the reply and its claim are on one cluster slot.
        return [f"{self._prefix}{{{key}}}", f"{self._claim_prefix}{{{key}}}"]


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
