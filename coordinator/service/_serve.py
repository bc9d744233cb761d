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

from contracts import Codec, routes
from coordinator.adapters.rabbitmq import RabbitDeadLetters
from coordinator.adapters.redis import RedisBreakerStore, RedisClock, RedisSagaStore
from coordinator.breakers import BreakerBoard, policies
from coordinator.core import SagaDefinition
from coordinator.runtime import Coordinator, SenderCheck, check_keys
from coordinator.service._http import HttpExtras
from coordinator.service._observe import observe, watch_servers
from coordinator.service._process import loop_name, until_signalled
from coordinator.service._settings import Settings
from coordinator.service._wiring import (
    check_signers,
    connect_servers,
    keyring_of,
    record_deployment,
    resigner,
    signed,
)
from coordinator.telemetry import (
    SagaMetrics,
    SagaTracer,
    StoreSampler,
    Telemetry,
    shutdown_tracing,
    tracer_from_environment,
)

__all__ = ["serve_coordinator"]

_log = logging.getLogger("coordinator")


async def serve_coordinator(
    definitions: Iterable[SagaDefinition[Any]],
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    extras: HttpExtras | None = None,
) -> None:
    """Run one coordinator replica until signalled; ``extras`` (the REST API) go on its
    HTTP server, when it has one."""
    definitions = list(definitions)  # read twice: by the coordinator and the record
    # Checked before connecting: a bad or missing key is one line at start, not a
    # failure after the servers answered.
    keyring = settings.keyring()
    check_keys(definitions, keyring)
    tracer = tracer_from_environment("saga-coordinator")
    async with AsyncExitStack() as stack:
        stack.callback(shutdown_tracing)
        observed = await observe(stack, settings, process="saga-coordinator", extras=extras)
        metrics = None
        if observed.meter is not None:
            metrics = SagaMetrics(observed.meter, namespace=settings.namespace)
        telemetry = Telemetry(
            tracer=None if tracer is None else SagaTracer(tracer, settings.trace_mode),
            metrics=metrics,
        )
        clock: RedisClock | None = None

        async def start_clock(redis: Any) -> None:
            # The first TIME is the probe: a reply lost there is waited out too.
            nonlocal clock
            clock = RedisClock(redis)
            await clock.start()

        keyring_of(settings)  # refused before anything connects
        transport, redis = await connect_servers(stack, settings, start_clock)
        messaging = signed(transport, settings, max_age=settings.retention)
        assert clock is not None
        stack.push_async_callback(clock.stop)
        store = RedisSagaStore(
            redis,
            namespace=settings.namespace,
            buckets=settings.buckets,
            retention=settings.retention,
        )
        definitions = list(definitions)
        services = {step.service for d in definitions for step in d.steps.values()}
        sends = [("commands", routes.command_key(s, "Command")) for s in sorted(services)]
        if settings.announce and definitions:
            sends.append(("lifecycle", routes.lifecycle_key(definitions[0].name, "completed")))
        check_signers(messaging, sends)
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
                telemetry=telemetry,
            )
        coordinator = Coordinator(
            definitions,
            transport=messaging,
            store=store,
            clock=clock,
            codec=Codec(max_size=settings.max_message_size),
            timer_interval=settings.timer_interval,
            prefetch=settings.prefetch,
            announce=settings.announce,
            breakers=board,
            telemetry=telemetry,
            dead_letters=RabbitDeadLetters(transport, resign=resigner(messaging)),
            keyring=keyring,
            senders=senders_of(settings),
        )
        if board is not None:
            board.on_recovery(coordinator.resume_parked)
            await board.start()
            stack.push_async_callback(board.stop)
        await coordinator.start()
        stack.push_async_callback(coordinator.stop)
        await record_deployment(redis, settings.namespace, definitions)
        await observed.connected(stack)  # ready only once the API can answer too
        watch_servers(observed.readiness, transport, redis)
        if metrics is not None:
            sampler = StoreSampler(
                store,
                metrics,
                names={d.name for d in definitions},
                services={step.service for d in definitions for step in d.steps.values()},
                interval=settings.metrics_interval,
            )
            sampler.start()
            stack.push_async_callback(sampler.stop)
        _log.info(
            "coordinator running in namespace %r on %s%s",
            settings.namespace,
            loop_name(),
            observed.serving,
        )
        await until_signalled(stop)
        observed.readiness.drain()
        _log.info("stopping: draining in-flight transitions")


def senders_of(settings: Settings) -> SenderCheck | None:
    """The sender check ``settings`` ask for; None when it is off."""
    if not settings.checks_senders:
        if settings.sender_check == "off":  # chosen, with users perhaps configured: said once
            _log.warning("sender check off: any user may send replies and control messages")
        return None
    return SenderCheck(
        namespace=settings.namespace,
        service_users=settings.service_users,
        control_users=settings.control_users,
    )
