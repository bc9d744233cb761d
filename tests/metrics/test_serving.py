"""Metrics and probes of real processes on the real servers, read over HTTP.

The coordinator and the participants run in this process (``serve_coordinator``
and ``serve_participants``, as ``saga run`` and ``saga participant`` do) on
RabbitMQ and Redis, each serving its own port; shipping is the test's own
responder (``shop_support.Shipping``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from procs import free_port, poll
from readings import scraped, total
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, connect_rabbit
from shop_support import (
    ANSWERS,
    COMMANDS,
    COMPENSATIONS,
    FINISHED,
    NAME,
    REPLIES,
    SCENARIO,
    STEP_DURATIONS,
    Shipping,
    definition,
    services,
)
from throwaway import RedisServer

from coordinator.service import Settings, open_client, serve_coordinator
from participants import serve_participants

pytestmark = pytest.mark.timeout(180)

T = TypeVar("T")
Samples = dict[str, list[tuple[dict[str, str], float]]]
QUEUES = ["coordinator.events", "stock.commands", "pay.commands", "shipping.commands"]


def settings(ns: str, redis_url: str = REDIS_URL) -> Settings:
    return Settings(
        namespace=ns,
        amqp_url=AMQP_URL,
        redis_url=redis_url,
        timer_interval=timedelta(seconds=0.05),
        metrics_interval=timedelta(seconds=0.2),
        wait_for_servers=timedelta(seconds=10),
        http=f"127.0.0.1:{free_port()}",
    )


async def get(settings: Settings, path: str) -> httpx.Response:
    address = settings.http_address
    assert address is not None
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"http://{address[0]}:{address[1]}{path}")


async def scrape(settings: Settings) -> Samples:
    response = await get(settings, "/metrics")
    assert response.status_code == 200
    return scraped(response.text)


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 60) -> T:
    return await poll(what, probe, timeout=timeout, interval=0.1)


async def ready(settings: Settings) -> bool | None:
    return True if (await get(settings, "/readyz")).status_code == 200 else None


async def test_a_mixed_run_scraped_over_http(ns: str, redis_client: Redis) -> None:
    helper = await connect_rabbit(ns)
    coordinator_at, participant_at = settings(ns), settings(ns)
    stop = asyncio.Event()
    coordinator = asyncio.create_task(
        serve_coordinator(
            [definition(ship_timeout=timedelta(seconds=3))], coordinator_at, stop=stop
        )
    )
    participants = asyncio.create_task(serve_participants(services(), participant_at, stop=stop))
    shipping = Shipping(helper)
    try:
        await until("the coordinator to be ready", lambda: ready(coordinator_at))
        await until("the participants to be ready", lambda: ready(participant_at))
        await shipping.start()
        async with open_client(coordinator_at) as client:
            for order_id in SCENARIO[:-1]:
                await client.start(NAME, {"order_id": order_id}, saga_id=order_id)
                state = await client.wait(order_id, timeout=60)
                assert state is not None and state.terminal, (order_id, state)
            await client.start(NAME, {"order_id": "down-2"}, saga_id="down-2")

            async def parked() -> bool | None:
                state = await client.state("down-2")
                return (
                    True if state and state.steps["charge"].status == "awaiting_service" else None
                )

            await until("down-2 to park behind pay's open breaker", parked)
        await helper.publish("events", f"{NAME}.TaskCompleted", b"not json", message_id="junk")

        async def settled() -> Samples | None:
            # The sampler reads the store every 0.2 s; the junk is dead-lettered soon.
            found = await scrape(coordinator_at)
            done = total(found, "saga_run_parked", saga_service="pay") == 1 and total(
                found, "saga_dead_letters_total"
            )
            return found if done else None

        found = await until("the parked saga and the dead letter in the metrics", settled)
        answered = await scrape(participant_at)
    finally:
        stop.set()
        await asyncio.gather(coordinator, participants, return_exceptions=True)
        await shipping.stop()
        await helper.delete_namespace(QUEUES)
        await helper.close()
    assert coordinator.exception() is None and participants.exception() is None

    name = {"saga_name": NAME}
    assert total(found, "saga_run_started_total", **name) == len(SCENARIO)
    for outcome, n in FINISHED.items():
        assert total(found, "saga_run_finished_total", saga_outcome=outcome, **name) == n
        assert total(found, "saga_run_duration_seconds_count", saga_outcome=outcome) == n
    assert total(found, "saga_run_active", saga_status="running", **name) == 1
    assert total(found, "saga_run_active", saga_status="compensating", **name) == 0
    for (step, kind, outcome), n in STEP_DURATIONS.items():
        labels = {"saga_step_name": step, "saga_step_kind": kind, "saga_step_outcome": outcome}
        assert total(found, "saga_step_duration_seconds_count", **labels) == n, labels
    assert total(found, "saga_step_retries_total", saga_step_name="charge") == 2
    for step, n in COMPENSATIONS.items():
        assert total(found, "saga_step_compensations_total", saga_step_name=step) == n
    assert total(found, "saga_timeouts_total", saga_step_name="ship", saga_timeout_kind="step") == 1
    assert total(found, "saga_circuit_breaker_transitions_total", saga_service="pay") == 1
    assert (
        total(
            found,
            "saga_circuit_breaker_transitions_total",
            saga_service="pay",
            saga_circuit_breaker_state="open",
        )
        == 1
    )
    assert (
        total(
            found,
            "saga_circuit_breaker_state",
            saga_service="pay",
            saga_circuit_breaker_state="open",
        )
        == 1
    )
    assert total(found, "saga_run_parked", saga_service="pay") == 1
    assert (
        total(
            found,
            "saga_dead_letters_total",
            messaging_destination_name=f"{ns}.coordinator.events",
            saga_dead_letter_reason="malformed_json",
        )
        == 1
    )
    # Three retries and one timeout fell due.
    assert total(found, "saga_timer_lag_seconds_count") == 4
    for key, n in COMMANDS.items():
        destination = f"{ns}.commands:{key}"
        assert (
            total(
                found,
                "messaging_client_sent_messages_total",
                messaging_destination_name=destination,
            )
            == n
        ), key
    # The replies, the starts and the junk.
    assert total(found, "messaging_client_consumed_messages_total") == REPLIES + len(SCENARIO) + 1

    for (command, outcome), n in ANSWERS.items():
        labels = {"saga_command": command, "saga_command_outcome": outcome}
        assert total(answered, "saga_participant_commands_total", **labels) == n, labels
        assert total(answered, "saga_participant_handler_duration_seconds_count", **labels) == n


async def test_readyz_follows_redis(ns: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    helper = await connect_rabbit(ns)
    at = settings(ns, redis.url)
    stop = asyncio.Event()
    coordinator = asyncio.create_task(serve_coordinator([definition()], at, stop=stop))
    try:
        await until("the coordinator to be ready", lambda: ready(at))
        await redis.stop()

        async def unready() -> Any:
            response = await get(at, "/readyz")
            return response.json() if response.status_code == 503 else None

        answer = await until("/readyz to turn 503", unready)
        assert [r for r in answer["reasons"] if r.startswith("redis: ")], answer
        assert not [r for r in answer["reasons"] if r.startswith("rabbitmq: ")], answer
        assert (await get(at, "/livez")).status_code == 200
        await redis.start()
        await until("/readyz to turn 200 again", lambda: ready(at))
    finally:
        stop.set()
        await asyncio.gather(coordinator, return_exceptions=True)
        await helper.delete_namespace(QUEUES)
        await helper.close()
        await redis.stop()
    assert coordinator.exception() is None
