"""Settings to connected servers: RabbitMQ and Redis, for the processes (waited
for as ``SAGA_WAIT_FOR_SERVERS`` says; ``participants`` reuses this for
``saga participant``) and for the operator's client.

An operator's command fails at once, in one line, when a server is down: the
client does not wait. It connects to RabbitMQ on its first publish, so reading
commands (``show``, ``list``, ``history``) need only Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any, final

from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import RedisSagaStore, connect_redis
from coordinator.client import SagaClient
from coordinator.ports import Exchange, Handler, Subscription
from coordinator.service._settings import Settings
from coordinator.service._startup import wait_for_server

__all__ = ["connect_rabbit", "connect_servers", "open_client"]


async def connect_rabbit(settings: Settings) -> RabbitTransport:
    """The broker of ``settings``, waited for as ``SAGA_WAIT_FOR_SERVERS`` says."""
    return await wait_for_server(
        "RabbitMQ",
        settings.amqp_url,
        "SAGA_AMQP_URL",
        lambda: RabbitTransport.connect(
            settings.amqp_url,
            namespace=settings.namespace,
            delivery_limit=settings.delivery_limit,
            reconnect_interval=settings.reconnect_interval,
            heartbeat=settings.heartbeat,
        ),
        patience=settings.wait_for_servers,
    )


async def connect_servers(
    stack: AsyncExitStack, settings: Settings, probe: Callable[[Any], Awaitable[object]]
) -> tuple[RabbitTransport, Any]:
    """Both servers, each waited for; ``probe`` is the first Redis call to make."""
    transport = await connect_rabbit(settings)
    stack.push_async_callback(transport.close)
    redis = connect_redis(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    await wait_for_server(
        "Redis",
        settings.redis_url,
        "SAGA_REDIS_URL",
        lambda: probe(redis),
        patience=settings.wait_for_servers,
    )
    return transport, redis


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[SagaClient]:
    """A ``SagaClient`` of the deployment ``settings`` points at, closed on exit.

    Raises:
        ServerUnreachableError: Redis does not answer (RabbitMQ: at the first publish).
    """
    once = settings.model_copy(update={"wait_for_servers": timedelta(0)})
    redis = connect_redis(settings.redis_url)
    try:
        await wait_for_server(
            "Redis", settings.redis_url, "SAGA_REDIS_URL", redis.ping, patience=timedelta(0)
        )
        transport = _ConnectedOnFirstUse(once)
        try:
            store = RedisSagaStore(
                redis,
                namespace=settings.namespace,
                buckets=settings.buckets,
                retention=settings.retention,
            )
            yield SagaClient(transport, store, namespace=settings.namespace)
        finally:
            await transport.close()
    finally:
        await redis.aclose()


@final
class _ConnectedOnFirstUse:
    """A RabbitMQ transport that connects when first used, once for concurrent callers."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._transport: RabbitTransport | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> RabbitTransport:
        async with self._connecting:  # concurrent first calls share one connection
            if self._transport is None:
                self._transport = await connect_rabbit(self._settings)
        return self._transport

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
    ) -> None:
        transport = await self._connected()
        await transport.publish(
            exchange, routing_key, body, message_id=message_id, headers=headers, mandatory=mandatory
        )

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        await (await self._connected()).declare(queue, exchange, pattern)

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        transport = await self._connected()
        return await transport.subscribe(queue, exchange, pattern, handler, prefetch=prefetch)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
