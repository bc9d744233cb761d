"""``SAGA_ANNOUNCE`` reaches the coordinator ``saga run`` serves, on the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from procs import poll, servers_up
from servers import AMQP_URL, REDIS_URL, connect_redis, drop_namespace, namespace

from contracts import DEFAULT_CODEC, StartSaga
from coordinator import Settings, UnroutableError
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import saga
from coordinator.ports import Delivery
from coordinator.service import serve_coordinator


def _empty(store: RedisSagaStore) -> Callable[[], Awaitable[bool | None]]:
    async def probe() -> bool | None:
        return True if await store.outbox_size() == 0 else None

    return probe


async def _announced_on_start(announce: str) -> list[str]:
    """Lifecycle events published while a saga starts and sends its first command."""
    ns = namespace()
    helper = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    events: list[str] = []
    commands: list[str] = []

    marker = asyncio.Event()

    async def on_event(delivery: Delivery) -> None:
        if delivery.message_id == "marker":
            marker.set()
        else:
            events.append(DEFAULT_CODEC.decode_lifecycle(delivery.body).event)
        await delivery.ack()

    async def on_command(delivery: Delivery) -> None:
        commands.append(delivery.message_id)
        await delivery.ack()

    stop = asyncio.Event()
    settings = Settings(
        namespace=ns,
        amqp_url=AMQP_URL,
        redis_url=REDIS_URL,
        announce=frozenset(n for n in announce.split(",") if n),  # type: ignore[arg-type]
    )
    server = asyncio.create_task(serve_coordinator([saga], settings, stop=stop))
    try:
        await helper.subscribe("watch.lifecycle", "lifecycle", "#", on_event)
        await helper.subscribe("watch.commands", "commands", "#", on_command)
        start = StartSaga(
            message_id="m-a1",
            saga_id="a1",
            saga_name=saga.name,
            input={"order_id": "a1", "lines": [], "total_cents": 100},
            sent_at=datetime.now(UTC),
        )
        body = DEFAULT_CODEC.encode(start)
        for _ in range(100):  # unroutable until the coordinator has declared its queue
            try:
                await helper.publish(
                    "events", f"{saga.name}.StartSaga", body, message_id=start.message_id
                )
                break
            except UnroutableError:
                await asyncio.sleep(0.1)
        for _ in range(100):
            if commands:
                break
            await asyncio.sleep(0.1)
        assert commands, "the coordinator never sent the first command"
        # Once the outbox is empty, every event of the start is published; a marker
        # published after them reaches the queue behind them (one queue is FIFO), so
        # when it arrives every event published with the start has arrived too.
        redis = await connect_redis()
        try:
            store = RedisSagaStore(redis, namespace=ns, buckets=settings.buckets)
            await poll("the outbox to be empty", _empty(store), timeout=30, interval=0.05)
        finally:
            await redis.aclose()
        await helper.publish("lifecycle", "marker", b"{}", message_id="marker")
        await asyncio.wait_for(marker.wait(), 30)
        return events
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)
        served = {f"{step.service}.commands" for step in saga.steps.values()}
        await helper.delete_namespace(queues=["coordinator.events", *served])
        await helper.close()
        redis = await connect_redis()
        await drop_namespace(redis, ns)
        await redis.aclose()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("announce", "expected"),
    [("started,completed,compensated,failed,cancelled", ["started"]), ("completed", [])],
)
async def test_the_served_coordinator_publishes_what_announce_names(
    announce: str, expected: list[str]
) -> None:
    servers_up()
    assert await _announced_on_start(announce) == expected
