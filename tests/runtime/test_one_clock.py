"""One clock for the outbox: a replica's own clock, ahead or behind, never decides
when an entry left behind is relayed (memory and Redis stores).

Until issue 10 the Redis store scored entries with the writing process's clock
and the relay compared with its own: a relay ahead republished a fresh command
at once (a duplicate), one behind held back an entry that needed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from servers import connect_redis, drop_namespace

from coordinator import Coordinator
from coordinator.adapters.memory import MemorySagaStore, MemoryTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import Order, saga
from coordinator.examples.orders.messages import Line

YEAR = timedelta(days=365)


class SkewedClock:
    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(delay.total_seconds())


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemorySagaStore()
        return
    client = await connect_redis()
    yield RedisSagaStore(client, namespace=ns, buckets=2, retention=timedelta(hours=1))
    await drop_namespace(client, ns)
    await client.aclose()


def replica(store: Any, transport: MemoryTransport, skew: timedelta, **options: Any) -> Coordinator:
    return Coordinator([saga], transport=transport, store=store, clock=SkewedClock(skew), **options)


async def left_in_the_outbox(store: Any, transport: MemoryTransport, skew: timedelta) -> None:
    """A replica whose clock is ``skew`` off commits a start whose messages fail to go out."""
    writer = replica(store, transport, skew)
    await writer.start(loops=False)
    transport.fail_next_publish(times=2)  # the started event and the first command
    order = Order(order_id="o1", lines=[Line(sku="a", quantity=1)], total_cents=1)
    await writer.start_saga(saga.name, "o1", order)
    assert await store.outbox_size() == 2
    await writer.stop()


@pytest.mark.parametrize(
    ("writer", "relayer"), [(-YEAR, timedelta(0)), (timedelta(0), YEAR), (-YEAR, YEAR)]
)
async def test_a_fresh_entry_is_not_relayed_whatever_the_clocks(
    store: Any, writer: timedelta, relayer: timedelta
) -> None:
    transport = MemoryTransport()
    await left_in_the_outbox(store, transport, writer)
    relay = replica(store, transport, relayer, relay_after=timedelta(seconds=30))
    assert await relay.relay() == 0
    assert await store.outbox_size() == 2


@pytest.mark.parametrize(
    ("writer", "relayer"), [(YEAR, timedelta(0)), (timedelta(0), -YEAR), (YEAR, -YEAR)]
)
async def test_an_entry_old_enough_is_relayed_whatever_the_clocks(
    store: Any, writer: timedelta, relayer: timedelta
) -> None:
    transport = MemoryTransport()
    await left_in_the_outbox(store, transport, writer)
    # relay_after=0: any entry already committed is old enough, by the store's clock.
    relay = replica(store, transport, relayer, relay_after=timedelta(0))
    assert await relay.relay() == 2
    assert await store.outbox_size() == 0
