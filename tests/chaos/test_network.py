"""Redis and RabbitMQ misbehave between the processes and the servers: replies
lost after the command ran, a long silence, connections reset. Every process
talks to the servers through a fault-injecting `Proxy`; the test reads and
checks through direct connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from procs import Deployment
from proxy import Proxy
from servers import AMQP_URL, REDIS_URL
from workload import Run, check_at_rest, make_orders, mix_of

from coordinator.service import open_client

# Outcomes of every kind but the slow shipper's, whose outcome depends on the
# ship step's timeout (see tolerant.py).
MIX = {"declined": 0.15, "out_of_stock": 0.02, "flaky": 0.10, "large": 0.10}

Proxies = Callable[..., Awaitable[Proxy]]


@pytest.mark.timeout(300)
async def test_redis_replies_dropped_after_execution(
    deploy: Callable[..., Deployment], proxies: Proxies
) -> None:
    """3% of Redis answers never reach the coordinators and participants: the
    command ran, the client sees a reset connection and does not know. Every
    write must be safe to find done on a retry (a commit, a claim, a recorded
    reply, a timer, an outbox entry).

    Each loss costs a reconnect and a retry, well under a second: the steps get
    three attempts so that a few in a row on one step cannot decide an outcome.
    """
    redis = await proxies(REDIS_URL, name="redis", seed=10)
    d = deploy(step_attempts=3)
    d.coordinator(redis_url=redis.url)
    d.coordinator(redis_url=redis.url)
    d.participant(redis_url=redis.url)
    d.participant(redis_url=redis.url)
    await d.wait_ready(coordinators=2, participants=2)

    orders = make_orders(mix_of(150, **MIX), prefix="drop")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        redis.drop_replies(0.03)
        await run.start_all(pace=0.03)
        took = await run.wait_all(timeout=200)
        redis.heal()
        print(f"{len(orders)} sagas in {took:.1f} s; {redis.stats}")
        assert redis.stats.dropped_replies >= 20  # the fault really happened
        await check_at_rest(d, client, run)


@pytest.mark.timeout(420)
async def test_redis_blackholed_then_rabbitmq_resets(
    deploy: Callable[..., Deployment], proxies: Proxies
) -> None:
    """Redis goes silent for 15 s mid-run (connections open, nothing answered,
    what was sent is delivered when it heals); then every RabbitMQ connection of
    every process is reset every 3 s until the run ends.

    Step timeouts are 40 s, longer than the silence and what follows it, so no
    attempt times out because of it: the input alone decides the outcomes.
    """
    redis = await proxies(REDIS_URL, name="redis")
    amqp = await proxies(AMQP_URL, name="amqp")
    d = deploy(step_timeout=40, step_attempts=3)
    for _ in range(2):
        d.coordinator(redis_url=redis.url, amqp_url=amqp.url)
    for _ in range(2):
        d.participant(redis_url=redis.url, amqp_url=amqp.url)
    await d.wait_ready(coordinators=2, participants=2)

    orders = make_orders(mix_of(150, **MIX), prefix="hole")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        starting = asyncio.create_task(run.start_all(pace=0.1))
        await run.wait_until(30, timeout=120)
        redis.blackhole()
        held_at = run.finished()
        await asyncio.sleep(15)  # the length of the outage, not a wait for something
        await run.refresh()  # read from Redis directly, not through any proxy
        during = run.finished() - held_at
        redis.heal()
        print(f"redis silent for 15 s from {held_at} ended; {during} ended meanwhile")

        resets = 0
        done = asyncio.Event()

        async def reset_rabbitmq() -> None:
            nonlocal resets
            while not done.is_set():
                await asyncio.sleep(3)
                resets += amqp.reset()

        chaos = asyncio.create_task(reset_rabbitmq())
        try:
            await starting
            began = time.monotonic()
            await run.wait_all(timeout=300)
        finally:
            done.set()
            await chaos
        print(f"all ended {time.monotonic() - began:.1f} s after the last start; {resets} resets")
        assert resets > 0
        await d.wait_ready(coordinators=2, participants=2)
        await check_at_rest(d, client, run)


@pytest.mark.timeout(300)
async def test_redis_refusing_connections_for_15_s(
    deploy: Callable[..., Deployment], proxies: Proxies
) -> None:
    """Redis is down for 15 s mid-run, as during a restart: every connection is
    reset and new ones are refused at once. The processes must hold their work
    and retry until it is back (a participant must not spend a delivery's
    limit within the outage), and then finish every saga as its input says.

    Step timeouts are 40 s, longer than the outage, so no attempt times out
    because of it.
    """
    redis = await proxies(REDIS_URL, name="redis")
    d = deploy(step_timeout=40, step_attempts=3)
    d.coordinator(redis_url=redis.url)
    d.coordinator(redis_url=redis.url)
    d.participant(redis_url=redis.url)
    await d.wait_ready(coordinators=2, participants=1)

    orders = make_orders(mix_of(100, **MIX), prefix="down")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        starting = asyncio.create_task(run.start_all(pace=0.1))
        await run.wait_until(20, timeout=120)
        redis.refuse()
        at = run.finished()
        await asyncio.sleep(15)  # the length of the outage
        redis.heal()
        print(f"redis down for 15 s from {at} ended; {redis.stats}")
        await starting
        took = await run.wait_all(timeout=200)
        print(f"{len(orders)} sagas ended in {took:.1f} s")
        await d.wait_ready(coordinators=2, participants=1)
        await check_at_rest(d, client, run)
