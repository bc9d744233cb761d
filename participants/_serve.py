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
from coordinator.service import (
    Settings,
    check_signers,
    connect_servers,
    keyring_of,
    loop_name,
    observe,
    signed,
    until_signalled,
    watch_servers,
)
from coordinator.telemetry import (
    ParticipantMetrics,
    ServiceTracer,
    shutdown_tracing,
    tracer_from_environment,
)
from participants._service import Service
from participants._worker import ParticipantWorker

__all__ = ["serve_participants"]

_log = logging.getLogger("participants")


async def serve_participants(
    services: Sequence[Service], settings: Settings, *, stop: asyncio.Event | None = None
) -> None:
    """Run workers for ``services`` until signalled."""
    tracer = tracer_from_environment("saga-participant")
    async with AsyncExitStack() as stack:
        stack.callback(shutdown_tracing)
        observed = await observe(stack, settings, process="saga-participant")
        metrics = None
        if observed.meter is not None:
            metrics = ParticipantMetrics(observed.meter, namespace=settings.namespace)
        keyring_of(settings)  # refused before anything connects
        transport, redis = await connect_servers(stack, settings, lambda redis: redis.ping())
        # Commands are verified and replies signed when SAGA_SIGNING_KEYS is set;
        # the oldest signature accepted is as old as the replies remembered.
        messaging = signed(transport, settings, max_age=settings.idempotency_ttl)
        check_signers(
            messaging, [("events", f"reply.{s.name}.saga.TaskCompleted") for s in services]
        )
        idempotency = RedisIdempotencyStore(
            redis, namespace=settings.namespace, ttl=settings.idempotency_ttl
        )
        codec = Codec(max_size=settings.max_message_size)
        for service in services:
            worker = ParticipantWorker(
                service,
                transport=messaging,
                idempotency=idempotency,
                codec=codec,
                prefetch=settings.prefetch,
                lease=settings.participant_lease,
                tracer=None if tracer is None else ServiceTracer(tracer),
                metrics=metrics,
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
        watch_servers(observed.readiness, transport, redis)
        names = ", ".join(s.name for s in services)
        _log.info(
            "participants running in namespace %r on %s: %s%s",
            settings.namespace,
            loop_name(),
            names,
            observed.serving,
        )
        await until_signalled(stop)
        observed.readiness.drain()
        _log.info("stopping: finishing the commands in flight")
