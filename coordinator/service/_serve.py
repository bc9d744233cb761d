"""The coordinator process (``saga run``): one replica wired to RabbitMQ and Redis
from settings, until signalled.

Shutdown on SIGTERM or SIGINT is graceful: stop consuming, let the handlers in
flight finish (their transitions commit and their deliveries are acked), then
close the connections. Anything committed but not yet published stays in the
outbox, and the next replica to poll publishes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from contracts import Codec
from coordinator.adapters.redis import RedisBreakerStore, RedisClock, RedisSagaStore
from coordinator.breakers import BreakerBoard, policies
from coordinator.core import SagaDefinition
from coordinator.runtime import Coordinator
from coordinator.service._process import loop_name, until_signalled
from coordinator.service._settings import Settings
from coordinator.service._wiring import connect_servers, record_deployment

__all__ = ["serve_coordinator"]

_log = logging.getLogger("coordinator")


async def serve_coordinator(
    definitions: Iterable[SagaDefinition[Any]],
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one coordinator replica until signalled."""
    definitions = list(definitions)  # read twice: by the coordinator and the record
    async with AsyncExitStack() as stack:
        clock: RedisClock | None = None

        async def start_clock(redis: Any) -> None:
            # The first TIME is the probe: a reply lost there is waited out too.
            nonlocal clock
            clock = RedisClock(redis)
            await clock.start()

        transport, redis = await connect_servers(stack, settings, start_clock)
        assert clock is not None
        stack.push_async_callback(clock.stop)
        store = RedisSagaStore(
            redis,
            namespace=settings.namespace,
            buckets=settings.buckets,
            retention=settings.retention,
        )
        definitions = list(definitions)
        board: BreakerBoard | None = None
        if settings.breakers_enabled:
            by_service, default = policies(
                definitions, defaults=settings.breaker_defaults, overrides=settings.breakers
            )
            board = BreakerBoard(
                RedisBreakerStore(redis, namespace=settings.namespace),
                store,
                clock=clock,
                services=by_service,
                policies=by_service,
                default=default,
            )
        coordinator = Coordinator(
            definitions,
            transport=transport,
            store=store,
            clock=clock,
            codec=Codec(max_size=settings.max_message_size),
            timer_interval=settings.timer_interval,
            prefetch=settings.prefetch,
            announce=settings.announce,
            breakers=board,
        )
        if board is not None:
            board.on_recovery(coordinator.resume_parked)
            await board.start()
            stack.push_async_callback(board.stop)
        await coordinator.start()
        stack.push_async_callback(coordinator.stop)
        await record_deployment(redis, settings.namespace, definitions)
        _log.info("coordinator running in namespace %r on %s", settings.namespace, loop_name())
        await until_signalled(stop)
        _log.info("stopping: draining in-flight transitions")
