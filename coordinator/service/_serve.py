"""Long-running processes: the coordinator (``saga run``), wired to RabbitMQ and
Redis from settings; `participants` reuses the plumbing for ``saga participant``.

Shutdown on SIGTERM or SIGINT is graceful: stop consuming, let the handlers in
flight finish (their transitions commit and their deliveries are acked), then
close the connections. Anything committed but not yet published stays in the
outbox, and the next replica to poll publishes it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AsyncExitStack
from typing import Any, Literal, TypeVar

from contracts import Codec
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import (
    RedisClock,
    RedisSagaStore,
    connect_redis,
)
from coordinator.core import SagaDefinition
from coordinator.runtime import Coordinator
from coordinator.service._settings import Settings
from coordinator.service._startup import wait_for_server

__all__ = [
    "connect_rabbit",
    "connect_servers",
    "loop_name",
    "run_loop",
    "serve_coordinator",
    "until_signalled",
]

_log = logging.getLogger("coordinator")

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], kind: Literal["auto", "uvloop", "asyncio"]) -> T:
    """Run ``main`` to completion on uvloop (``auto``: when it is installed) or asyncio's loop.

    uvloop does the socket I/O and the scheduling in C; for these processes,
    which mostly move small messages, it is most of their CPU.
    """
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


async def until_signalled(stop: asyncio.Event | None = None) -> None:
    """Wait for SIGTERM or SIGINT (or ``stop`` being set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


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


async def serve_coordinator(
    definitions: Iterable[SagaDefinition[Any]],
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one coordinator replica until signalled."""
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
        coordinator = Coordinator(
            definitions,
            transport=transport,
            store=store,
            clock=clock,
            codec=Codec(max_size=settings.max_message_size),
            timer_interval=settings.timer_interval,
            prefetch=settings.prefetch,
            announce=settings.announce,
        )
        await coordinator.start()
        stack.push_async_callback(coordinator.stop)
        _log.info("coordinator running in namespace %r on %s", settings.namespace, loop_name())
        await until_signalled(stop)
        _log.info("stopping: draining in-flight transitions")
