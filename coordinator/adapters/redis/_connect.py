"""The Redis client the adapters share: a single server or a cluster, by URL."""

from __future__ import annotations

import ssl
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

__all__ = ["connect_redis"]


def connect_redis(url: str, ssl_context: ssl.SSLContext | None = None) -> Redis | RedisCluster:
    """A client for ``url``; ``redis+cluster://`` gives a cluster client.

    ``ssl_context`` is the TLS context of a ``rediss://`` URL: used as given,
    so the CA, the client certificate and the hostname check are the caller's,
    not rebuilt by redis-py from the URL's ``ssl_*`` options.
    """
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    client = Redis.from_url(url)
    pool = client.connection_pool
    if ssl_context is not None:
        if not issubclass(pool.connection_class, SSLConnection):
            raise ValueError("a TLS context needs a rediss:// URL")
        pool.connection_class = _with_context(pool.connection_class, ssl_context)
    if HIREDIS_AVAILABLE:
        pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


def _with_context(cls: type[SSLConnection], context: ssl.SSLContext) -> type[SSLConnection]:
    """``cls`` handing ``context`` to the socket: redis-py's asyncio connections
    take only file names and flags, and build a context of their own from them."""

    def _connection_arguments(self: SSLConnection) -> Any:
        arguments = dict(super(tls, self)._connection_arguments())
        arguments["ssl"] = context
        return arguments

    tls: type[SSLConnection] = type(
        f"Context{cls.__name__}", (cls,), {"_connection_arguments": _connection_arguments}
    )
    return tls


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
