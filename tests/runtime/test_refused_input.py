"""Bad input to a running saga, through the real runtime on a real Redis store.

The order example's approval wait takes ``Approval(approved: bool, by: str)``.
A signal that does not fit, or that no wait takes, is refused: recorded in the
history with its reason and message id, dead-lettered with the reason when it
came over the broker, raised as ``SagaRefusedError`` to an API caller, and the
saga waits on. Until issue 10 such a signal compensated the whole saga.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from servers import connect_redis, drop_namespace

from contracts import DEFAULT_CODEC, CancelSaga, Signal, routes
from coordinator import Coordinator, SagaRefusedError
from coordinator.adapters.memory import (
    MemoryDeadLetters,
    MemoryIdempotencyStore,
    MemoryTransport,
    SystemClock,
)
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Line
from coordinator.ports import DeadLetters, Transport
from participants import ParticipantWorker

AMQP_URL = os.environ.get("SAGA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
WAIT = 20.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Setup:
    def __init__(self, kind: str, transport: Transport, store: RedisSagaStore) -> None:
        self.kind = kind
        self.transport = transport
        self.store = store
        clock = SystemClock()
        self.coordinator = Coordinator(
            [saga],
            transport=transport,
            store=store,
            clock=clock,
            timer_interval=timedelta(seconds=0.05),
        )
        self.workers = [
            ParticipantWorker(
                s, transport=transport, idempotency=MemoryIdempotencyStore(), clock=clock
            )
            for s in build_services(Ledger(), clock)
        ]

    async def dead(self) -> list[tuple[str, str, str]]:
        """``(message_id, reason, detail)`` of the coordinator's dead letters."""
        if isinstance(self.transport, MemoryTransport):
            dead_letters: DeadLetters = MemoryDeadLetters(self.transport)
        else:
            assert isinstance(self.transport, RabbitTransport)
            dead_letters = RabbitDeadLetters(self.transport)
        letters = await dead_letters.list(routes.EVENTS_QUEUE)
        return [(d.message_id, d.reason, d.detail) for d in letters]


@pytest.fixture(params=["memory", "rabbitmq"])
async def setup(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Setup]:
    client: Redis = await connect_redis()
    store = RedisSagaStore(client, namespace=ns, buckets=2, retention=timedelta(hours=1))
    transport: Any
    if request.param == "memory":
        transport = MemoryTransport()
    else:
        try:
            transport = await RabbitTransport.connect(
                AMQP_URL,
                namespace=f"test-{uuid.uuid4().hex[:12]}",
                connect_timeout=timedelta(seconds=3),
            )
        except (ConnectionError, OSError, TimeoutError) as exc:
            await client.aclose()
            reason = f"RabbitMQ is not reachable at {AMQP_URL}: {exc!r}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    s = Setup(request.param, transport, store)
    await s.coordinator.start()
    for worker in s.workers:
        await worker.start()
    try:
        yield s
    finally:
        await s.coordinator.stop()
        for worker in s.workers:
            await worker.stop()
        if request.param == "rabbitmq":
            await transport.delete_namespace()
        await transport.close()
        await drop_namespace(client, ns)
        await client.aclose()


async def eventually(probe: Callable[[], Awaitable[Any]]) -> Any:
    async with asyncio.timeout(WAIT):
        while True:
            result = await probe()
            if result:
                return result
            await asyncio.sleep(0.02)


async def waiting_for_approval(s: Setup, saga_id: str) -> Any:
    async def probe() -> Any:
        state = await s.coordinator.load(saga_id)
        return state if state and state.steps["approval"].status == "waiting" else None

    return await eventually(probe)


def signal(saga_id: str, message_id: str, name: str, data: dict[str, object]) -> bytes:
    return DEFAULT_CODEC.encode(
        Signal(message_id=message_id, saga_id=saga_id, name=name, data=data, sent_at=T0)
    )


async def test_a_bad_signal_over_the_broker_is_dead_lettered_and_the_saga_waits(
    setup: Setup,
) -> None:
    s, saga_id = setup, f"big-{uuid.uuid4().hex[:8]}"
    order = Order(order_id=saga_id, lines=[Line(sku="book", quantity=1)], total_cents=250_000)
    await s.coordinator.start_saga(saga.name, saga_id, order, message_id=f"start-{saga_id}")
    before = await waiting_for_approval(s, saga_id)

    bad = {"approved": "yes", "by": "dana"}
    await s.transport.publish(
        "events", "x", signal(saga_id, "bad", "approval", bad), message_id="bad"
    )
    await s.transport.publish(
        "events", "x", signal(saga_id, "nameless", "aproval", {}), message_id="nameless"
    )
    letters = await eventually(lambda: _at_least(s.dead(), 2))
    by_id = {mid: (reason, detail) for mid, reason, detail in letters}
    assert by_id["bad"][0] == "signal_refused"
    assert "does not fit Approval" in by_id["bad"][1] and "approved" in by_id["bad"][1]
    assert by_id["nameless"][0] == "signal_refused"
    assert "no wait for signal 'aproval'" in by_id["nameless"][1]

    history = await s.store.history(saga_id)
    refused = {e.input_id: e for e in history if e.refused}
    assert set(refused) == {"bad", "nameless"}
    assert all(not e.changed and e.revision == before.revision for e in refused.values())
    assert history[0].input_id == f"start-{saga_id}"
    state = await s.coordinator.load(saga_id)
    assert state is not None
    assert (state.revision, state.status) == (before.revision, "running")
    assert state.steps["approval"].status == "waiting"

    good = {"approved": True, "by": "dana"}
    await s.transport.publish(
        "events", "x", signal(saga_id, "good", "approval", good), message_id="good"
    )

    async def completed() -> Any:
        state = await s.coordinator.load(saga_id)
        return state if state and state.status == "completed" else None

    state = await eventually(completed)
    assert state.data.approved_by == "dana"
    assert {e.input_id for e in await s.store.history(saga_id) if e.changed} >= {"good"}

    # A cancel the saga's status does not allow is dead-lettered with the reason too.
    cancel = CancelSaga(message_id="late-cancel", saga_id=saga_id, reason="too late", sent_at=T0)
    await s.transport.publish("events", "x", DEFAULT_CODEC.encode(cancel), message_id="late-cancel")
    letters = await eventually(lambda: _at_least(s.dead(), 3))
    [(reason, detail)] = [(r, d) for mid, r, d in letters if mid == "late-cancel"]
    assert reason == "cancel_refused" and "saga is completed" in detail


async def test_the_api_raises_the_refusal_and_records_it(setup: Setup) -> None:
    s, saga_id = setup, f"api-{uuid.uuid4().hex[:8]}"
    order = Order(order_id=saga_id, lines=[Line(sku="book", quantity=1)], total_cents=250_000)
    await s.coordinator.start_saga(saga.name, saga_id, order)
    before = await waiting_for_approval(s, saga_id)
    with pytest.raises(SagaRefusedError) as caught:
        await s.coordinator.signal(saga_id, "approval", {"approved": "yes"}, message_id="api-bad")
    assert caught.value.saga_id == saga_id and "does not fit" in caught.value.reason
    with pytest.raises(SagaRefusedError, match="no failed compensation"):
        await s.coordinator.retry(saga_id, message_id="api-retry")
    [bad, retry] = [e for e in await s.store.history(saga_id) if e.refused]
    assert (bad.input_id, retry.input_id) == ("api-bad", "api-retry")
    state = await s.coordinator.load(saga_id)
    assert state is not None and state.revision == before.revision
    assert await s.dead() == []


async def _at_least(probe: Awaitable[list[Any]], count: int) -> list[Any] | None:
    found = await probe
    return found if len(found) >= count else None
