"""Three coordinator replicas sharing Redis and RabbitMQ (a namespace of their own):
one opening a breaker stops them all within a second, and the probe budget holds
across all three, as counted by the participant itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from breaker_support import Switch, definition, services
from servers import connect_rabbit, connect_redis, drop_namespace, namespace

from coordinator import Coordinator
from coordinator.adapters.memory import SystemClock
from coordinator.adapters.redis import RedisBreakerStore, RedisIdempotencyStore, RedisSagaStore
from coordinator.breakers import BreakerBoard, policies
from coordinator.ports import Worker

RESET = timedelta(seconds=2)


@dataclass
class Cluster:
    switch: Switch
    sagas: RedisSagaStore
    breakers: RedisBreakerStore
    coordinators: list[Coordinator] = field(default_factory=list)
    boards: list[BreakerBoard] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    async def statuses(self, ids: list[str]) -> dict[str, str]:
        found = {}
        for saga_id in ids:
            state = await self.coordinators[0].load(saga_id)
            found[saga_id] = state.status if state is not None else "missing"
        return found


async def until(check: Callable[[], Any], *, within: float, what: str) -> float:
    """Wait for ``check`` (sync or async) to hold; returns the seconds it took."""
    began = time.monotonic()
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - began
        if time.monotonic() - began > within:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    ns = namespace()
    redis = await connect_redis()
    defn = definition(fail_max=3, reset_timeout=RESET, attempts=1)
    by_service, default = policies([defn])
    switch = Switch()
    c = Cluster(switch, RedisSagaStore(redis, namespace=ns), RedisBreakerStore(redis, namespace=ns))
    transports = []
    try:
        for _ in range(3):
            transport = await connect_rabbit(ns)
            transports.append(transport)
            sagas = RedisSagaStore(redis, namespace=ns)
            board = BreakerBoard(
                RedisBreakerStore(redis, namespace=ns),
                sagas,
                clock=SystemClock(),
                services=by_service,
                policies=by_service,
                default=default,
            )
            coordinator = Coordinator(
                [defn],
                transport=transport,
                store=sagas,
                clock=SystemClock(),
                breakers=board,
                timer_interval=timedelta(milliseconds=100),
            )
            board.on_recovery(coordinator.resume_parked)
            await coordinator.start()
            await board.start()
            c.coordinators.append(coordinator)
            c.boards.append(board)
        participant = await connect_rabbit(ns)
        transports.append(participant)
        idempotency = RedisIdempotencyStore(redis, namespace=ns, ttl=timedelta(hours=1))
        for service in services(switch):
            worker = service.worker(
                transport=participant, idempotency=idempotency, clock=SystemClock()
            )
            await worker.start()
            c.workers.append(worker)
        yield c
    finally:
        for board in c.boards:
            await board.stop()
        for coordinator in c.coordinators:
            await coordinator.stop()
        for worker in c.workers:
            await worker.stop()
        queues: set[str] = set()
        for transport in transports:
            queues |= transport.queues
        if transports:
            await transports[0].delete_namespace(queues)
        for transport in transports:
            await transport.close()
        await drop_namespace(redis, ns)
        await redis.aclose()


async def start(c: Cluster, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for i, saga_id in enumerate(ids):
        await c.coordinators[i % 3].start_saga("brk.order", saga_id, {"order_id": saga_id})
    return ids


async def test_one_replica_opening_stops_all_and_the_probe_budget_holds_across_them(
    cluster: Cluster,
) -> None:
    c, charges = cluster, lambda: cluster.switch.received[("pay", "charge")]
    c.switch.mode["pay"] = "failing"
    first = await start(c, "a", 3)
    await until(lambda: charges() == 3, within=10, what="three charges fail")

    async def opened() -> bool:
        return (await c.breakers.snapshot(["pay"]))["pay"].state == "open"

    await until(opened, within=5, what="the breaker opens")
    spread = await until(
        lambda: all("pay" in b.services_down() for b in c.boards), within=2, what="all stop"
    )
    assert spread < 1.0, f"the replicas saw the breaker open after {spread:.2f}s"
    print(f"\nall three replicas stopped dispatching {spread * 1000:.0f} ms after the store opened")

    # While open nothing reaches the participant: every new saga parks, on every replica.
    parked = await start(c, "p", 9)
    await until(_count_is(c, 9), within=5, what="nine parked")
    assert charges() == 3

    # Still failing when it half-opens: one probe across the three replicas, then open again.
    async def probe_failed() -> bool:
        events = await c.breakers.events("pay")
        return [(e.old, e.new) for e in events][:1] == [("half-open", "open")]

    waited = await until(probe_failed, within=RESET.total_seconds() + 3, what="probe fails")
    assert charges() == 4, f"{charges() - 3} probes went out, not 1: {c.switch.log}"
    print(f"first half-open after {waited:.2f}s: 1 probe, failed")

    # Recovered: the next probe succeeds, the breaker closes, every parked saga resumes.
    c.switch.mode["pay"] = "up"

    async def all_done() -> bool:
        return set((await c.statuses(parked)).values()) <= {"completed", "compensated"}

    took = await until(all_done, within=RESET.total_seconds() + 10, what="parked sagas finish")
    done = await c.statuses(parked)
    # The failed probe's saga gave up (attempts=1) and compensated; the others completed.
    assert sorted(done.values()).count("completed") == 8, done
    assert await c.sagas.parked_count("pay") == 0
    assert charges() == 4 + 1 + 7, charges()
    assert all(n == 1 for n in c.switch.applied.values())
    print(f"closed and 8 resumed sagas completed {took:.2f}s after recovery")
    assert set((await c.statuses(first)).values()) == {"compensated"}


def _count_is(c: Cluster, n: int) -> Callable[[], Any]:
    async def check() -> bool:
        return await c.sagas.parked_count("pay") == n

    return check
