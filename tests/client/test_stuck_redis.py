"""``saga stuck``'s query on the real Redis store: the index by last change
(``IdleSagas``, the same contract as the memory store's), ``find_stuck`` on a
coordinator whose payments service never answers, and the shapes of the definitions
the coordinators record, from which ``find_stuck`` tells what a wait expects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, connect_redis, drop_namespace

from coordinator import Coordinator, Saga, SagaDefinition
from coordinator.adapters.memory import (
    MemoryIdempotencyStore,
    MemorySagaStore,
    MemoryTransport,
    SystemClock,
)
from coordinator.adapters.redis import RedisSagaStore
from coordinator.client import Wait, find_stuck, shapes_of
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.ports import Commit, HistoryEntry
from coordinator.service import Settings, open_operator, record_deployment
from coordinator.service._wiring import recorded_shapes
from participants import ParticipantWorker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemorySagaStore()  # on the system clock, as Redis is on its own
        return
    client = await connect_redis()
    yield RedisSagaStore(client, namespace=ns, buckets=4, retention=timedelta(hours=1))
    await drop_namespace(client, ns)
    await client.aclose()


def commit(saga_id: str, status: str, *, name: str = "order", expected: int = -1) -> Commit:
    entry = HistoryEntry(
        at=T0, revision=0, input=msgspec.Raw(b'{"type":"X"}'), note="n", effects=msgspec.Raw(b"[]")
    )
    return Commit(
        saga_id=saga_id,
        name=name,
        status=status,
        expected_revision=expected,
        revision=expected + 1,
        state=b"{}",
        dedupe_id=f"d{expected + 1}",
        history=entry,
    )


async def test_idle_lists_running_and_compensating_sagas_oldest_first(store: Any) -> None:
    for saga_id, status in [("a", "running"), ("b", "compensating"), ("c", "completed")]:
        assert await store.commit(commit(saga_id, status)) == "committed"
        await asyncio.sleep(0.005)  # distinct stamps (Redis TIME, in milliseconds)
    await store.commit(commit("d", "running", name="other"))

    found = await store.idle({"running", "compensating"}, timedelta(0))
    assert [saga_id for saga_id, _at in found] == ["a", "b", "d"]
    assert [at for _id, at in found] == sorted(at for _id, at in found)
    named = await store.idle({"running", "compensating"}, timedelta(0), names={"order"})
    assert [saga_id for saga_id, _at in named] == ["a", "b"]
    assert [s for s, _ in await store.idle({"running"}, timedelta(0), limit=1)] == ["a"]
    assert await store.idle({"running"}, timedelta(hours=1)) == []


async def test_idle_follows_the_last_transition(store: Any) -> None:
    await store.commit(commit("a", "running"))
    await store.commit(commit("b", "running"))
    await asyncio.sleep(0.005)
    await store.commit(commit("a", "compensating", expected=0))

    found = await store.idle({"running", "compensating"}, timedelta(0))
    assert [saga_id for saga_id, _at in found] == ["b", "a"]
    assert [s for s, _ in await store.idle({"running"}, timedelta(0))] == ["b"]


@pytest.fixture
async def redis(ns: str) -> AsyncIterator[Redis]:
    client = await connect_redis()
    yield client
    await drop_namespace(client, ns)
    await client.aclose()


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await probe()):
            await asyncio.sleep(0.05)
    return found


async def test_find_stuck_on_redis_names_the_step_waiting_for_its_reply(
    redis: Redis, ns: str
) -> None:
    store = RedisSagaStore(redis, namespace=ns, buckets=4, retention=timedelta(hours=1))
    transport = MemoryTransport()
    clock = SystemClock()
    coordinator = Coordinator([saga], transport=transport, store=store, clock=clock)
    workers = [
        ParticipantWorker(s, transport=transport, idempotency=MemoryIdempotencyStore(), clock=clock)
        for s in build_services(Ledger(), clock)
        if s.name != "payments"  # never answers
    ]
    await coordinator.start()
    for worker in workers:
        await worker.start()
    try:
        order = {"order_id": "o-1", "lines": [], "total_cents": 1_000}
        await coordinator.start_saga("order.place", "o-1", order)
        await record_deployment(redis, ns, [saga])

        async def charge_sent() -> Any:
            state = await coordinator.load("o-1")
            return state is not None and state.steps["charge"].status == "dispatched"

        await eventually(charge_sent)
        settings = Settings(namespace=ns, redis_url=REDIS_URL, amqp_url=AMQP_URL, buckets=4)
        async with open_operator(settings) as operator:
            assert operator.names == {"order.place"}
            named = await find_stuck(
                operator.store, timedelta(0), shapes=operator.shapes, names=operator.names
            )
            looked_for = await find_stuck(operator.store, timedelta(0), shapes=operator.shapes)
            assert await find_stuck(operator.store, timedelta(hours=1), shapes={}) == []
    finally:
        for worker in workers:
            await worker.stop()
        await coordinator.stop()
        await transport.close()

    assert named == looked_for
    [stuck] = named
    [reply] = [w for w in stuck.waits if w.what == "reply"]
    assert (reply.step, reply.kind, reply.attempt, reply.service, reply.command) == (
        "charge",
        "action",
        1,
        "payments",
        "Charge",
    )
    assert reply.since is not None and reply.due == reply.since + timedelta(seconds=10)


async def test_the_operator_knows_the_queues_of_every_service_recorded(
    redis: Redis, ns: str
) -> None:
    await record_deployment(redis, ns, [saga])
    settings = Settings(namespace=ns, redis_url=REDIS_URL, amqp_url=AMQP_URL)
    async with open_operator(settings, services=["audit"]) as operator:
        assert operator.queues == [
            "coordinator.events",
            "audit.commands",
            "inventory.commands",
            "loyalty.commands",
            "payments.commands",
            "shipping.commands",
        ]


def waiting_saga() -> SagaDefinition[Order]:
    """A saga that waits first, in a wait named apart from its signal."""
    b = Saga("order.hold", data=Order, version=3)
    return b.define(b.wait_for("release", name="hold"))


HOLD = waiting_saga()


async def test_the_recorded_shapes_read_back_and_recording_again_changes_nothing(
    redis: Redis, ns: str
) -> None:
    await record_deployment(redis, ns, [saga, HOLD])
    await record_deployment(redis, ns, [HOLD, saga])  # another replica, the same record
    await redis.hset(f"{ns}:deployment:shapes", "order.old@0", b"{not a shape")

    recorded = await recorded_shapes(redis, ns)
    assert recorded == shapes_of([saga, HOLD])  # the unreadable one is left out: unknown
    assert recorded["order.hold@3"].waits["hold"].signal == "release"
    assert await redis.hlen(f"{ns}:deployment:shapes") == 3
    settings = Settings(namespace=ns, redis_url=REDIS_URL, amqp_url=AMQP_URL)
    async with open_operator(settings) as operator:
        assert operator.shapes == recorded


async def test_find_stuck_on_redis_tells_the_signal_from_the_recorded_shape(
    redis: Redis, ns: str
) -> None:
    store = RedisSagaStore(redis, namespace=ns, buckets=4, retention=timedelta(hours=1))
    transport = MemoryTransport()
    coordinator = Coordinator([HOLD], transport=transport, store=store, clock=SystemClock())
    await coordinator.start()
    try:
        order = {"order_id": "o-1", "lines": [], "total_cents": 1_000}
        await coordinator.start_saga("order.hold", "o-1", order)
        settings = Settings(namespace=ns, redis_url=REDIS_URL, amqp_url=AMQP_URL, buckets=4)
        async with open_operator(settings) as operator:
            [unknown] = await find_stuck(operator.store, timedelta(0), shapes=operator.shapes)
        await record_deployment(redis, ns, [HOLD])
        async with open_operator(settings) as operator:
            [known] = await find_stuck(operator.store, timedelta(0), shapes=operator.shapes)
        [started] = await store.history("o-1")
    finally:
        await coordinator.stop()
        await transport.close()

    assert known.waits == (Wait(what="signal", step="hold", signal="release", since=started.at),)
    assert unknown.waits == (Wait(what="signal", step="hold"),)  # recorded before shapes were
