"""``saga participant``: workers for a list of services, wired to RabbitMQ and
Redis from the same settings as the coordinator.

Shutdown on SIGTERM or SIGINT is graceful: stop consuming, let the commands in
flight finish and their replies go out, then close the connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack

from contracts import Codec
from coordinator.adapters.redis import RedisIdempotencyStore
from coordinator.service import Settings, connect_servers, loop_name, until_signalled
from participants._service import Service
from participants._worker import ParticipantWorker

__all__ = ["serve_participants"]

_log = logging.getLogger("participants")


async def serve_participants(
    services: Sequence[Service], settings: Settings, *, stop: asyncio.Event | None = None
) -> None:
    """Run workers for ``services`` until signalled."""
    async with AsyncExitStack() as stack:
        transport, redis = await connect_servers(stack, settings, lambda redis: redis.ping())
        idempotency = RedisIdempotencyStore(
            redis, namespace=settings.namespace, ttl=settings.idempotency_ttl
        )
        codec = Codec(max_size=settings.max_message_size)
        for service in services:
            worker = ParticipantWorker(
                service,
                transport=transport,
                idempotency=idempotency,
                codec=codec,
                prefetch=settings.prefetch,
                lease=settings.participant_lease,
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
        names = ", ".join(s.name for s in services)
        _log.info(
            "participants running in namespace %r on %s: %s",
            settings.namespace,
            loop_name(),
            names,
        )
        await until_signalled(stop)
        _log.info("stopping: finishing the commands in flight")
