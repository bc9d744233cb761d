"""The Redis client the adapters share: a single server or a cluster, by URL."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

__all__ = ["connect_redis"]


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
