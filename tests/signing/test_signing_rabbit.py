"""Signed messages on a real RabbitMQ: what the broker hands over (its exchange,
the routing key) is what is verified, and a dead letter moved back by the
default exchange is verified against where it was first published."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from servers import connect_rabbit, namespace

from coordinator.adapters.rabbitmq import RabbitDeadLetters
from coordinator.adapters.signing import Keyring, SigningTransport
from coordinator.ports import Delivery

KEYS = {"payments:old": "o" * 40, "payments:new": "n" * 40}
REPLY = "reply.payments.orders.TaskCompleted"
QUEUE = "coordinator.events"
DAY = timedelta(days=1)


async def test_a_dead_letter_moved_back_is_resigned_and_then_accepted() -> None:
    rabbit = await connect_rabbit(namespace())
    old = Keyring.of({"payments:old": KEYS["payments:old"]})
    root = Keyring.of(KEYS, active=["payments:new"], accepted=["payments:new"])
    receiver = SigningTransport(rabbit, root, max_age=DAY)
    seen: list[Delivery] = []
    arrived = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery)
        arrived.set()
        await delivery.ack()

    try:
        await receiver.subscribe(QUEUE, "events", "#", handle)
        sender = SigningTransport(rabbit, old, max_age=DAY)
        await sender.publish("events", REPLY, b"{}", message_id="m-1")
        await sender.publish("events", REPLY, b"{}", message_id="m-2")
        dead = RabbitDeadLetters(rabbit)
        async with asyncio.timeout(10):
            while len(letters := await dead.list(QUEUE)) < 2:
                await asyncio.sleep(0.05)
        assert [(d.reason, d.routing_key) for d in letters] == [("unknown_key", REPLY)] * 2

        # Moved back as it is, it is refused again; signed afresh by the root, accepted.
        await dead.redrive(QUEUE, ["m-1"])
        await RabbitDeadLetters(rabbit, resign=receiver.sign).redrive(QUEUE, ["m-2"])
        async with asyncio.timeout(10):
            await arrived.wait()
            while len(await dead.list(QUEUE)) < 1:
                await asyncio.sleep(0.05)
        assert [(d.message_id, d.exchange, d.routing_key) for d in seen] == [
            ("m-2", "events", REPLY)
        ]
        assert [(d.message_id, d.reason) for d in await dead.list(QUEUE)] == [
            ("m-1", "unknown_key")
        ]
    finally:
        await rabbit.delete_namespace(queues=[QUEUE])
        await rabbit.close()
