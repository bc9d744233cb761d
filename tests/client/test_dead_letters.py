"""The operator's dead-letter functions over every queue of a namespace, on the memory
transport and on a real RabbitMQ: the same calls the CLI and the REST API make."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import pytest
from servers import AMQP_URL, connect_rabbit, namespace

from coordinator import RequestRefusedError, UnroutableError
from coordinator.adapters.memory import MemoryDeadLetters, MemoryTransport
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.client import (
    dead_letter_json,
    list_dead_letters,
    namespace_queues,
    purge_dead_letters,
    redrive_dead_letters,
    show_dead_letter,
)
from coordinator.ports import DeadLetter, DeadLetters, Delivery, Transport

T = TypeVar("T")
WAIT = 10.0
QUEUES = namespace_queues(["payments", "inventory"])


class Broker:
    def __init__(self, transport: Transport, dead_letters: DeadLetters) -> None:
        self.transport = transport
        self.dead_letters = dead_letters
        self.taken: list[str] = []
        self.fixed: set[str] = set()  # message ids the consumers now accept

    async def consume(self) -> None:
        """Consumers of the events and payments queues that park what they are not told to take;
        inventory's queue is declared but has no consumer."""

        async def handle(delivery: Delivery) -> None:
            if delivery.message_id in self.fixed:
                self.taken.append(delivery.message_id)
                await delivery.ack()
            else:
                await delivery.dead_letter("schema_mismatch", f"bad {delivery.message_id}")

        await self.transport.subscribe("coordinator.events", "events", "#", handle)
        await self.transport.subscribe("payments.commands", "commands", "payments.*", handle)
        await self.transport.declare("inventory.commands", "commands", "inventory.*")


@pytest.fixture(params=["memory", "rabbitmq"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if request.param == "memory":
        memory = MemoryTransport()
        yield Broker(memory, MemoryDeadLetters(memory))
        await memory.close()
        return
    rabbit: RabbitTransport = await connect_rabbit(namespace(), delivery_limit=3)
    try:
        yield Broker(rabbit, RabbitDeadLetters(rabbit))
    finally:
        await rabbit.delete_namespace(set(QUEUES))
        await rabbit.close()


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    async with asyncio.timeout(WAIT):
        while not done(found := await probe()):
            await asyncio.sleep(0.02)
    return found


async def parked(broker: Broker, count: int) -> list[DeadLetter]:
    """Publish ``count`` bad messages to each of events and payments; wait until parked."""
    await broker.consume()
    for n in range(count):
        await broker.transport.publish("events", "order.StartSaga", b"{}", message_id=f"e-{n}")
        await broker.transport.publish("commands", "payments.Charge", b"{}", message_id=f"p-{n}")
    return await eventually(
        lambda: list_dead_letters(broker.dead_letters, QUEUES), lambda d: len(d) == 2 * count
    )


def ids(letters: list[DeadLetter]) -> list[str]:
    return [letter.message_id for letter in letters]


async def test_every_queue_of_the_namespace_is_listed_with_the_reasons(broker: Broker) -> None:
    letters = await parked(broker, 2)

    assert [(d.queue, d.message_id, d.reason, d.detail) for d in letters] == [
        ("coordinator.events", "e-0", "schema_mismatch", "bad e-0"),
        ("coordinator.events", "e-1", "schema_mismatch", "bad e-1"),
        ("payments.commands", "p-0", "schema_mismatch", "bad p-0"),
        ("payments.commands", "p-1", "schema_mismatch", "bad p-1"),
    ]
    assert [(d.exchange, d.routing_key) for d in letters[1:3]] == [
        ("events", "order.StartSaga"),
        ("commands", "payments.Charge"),
    ]
    only = await list_dead_letters(broker.dead_letters, QUEUES, queue="payments.commands", limit=1)
    assert ids(only) == ["p-0"]


async def test_an_unknown_queue_is_refused_and_a_declared_one_outside_the_record_is_read(
    broker: Broker,
) -> None:
    await parked(broker, 1)
    with pytest.raises(RequestRefusedError, match=r"no queue 'nope\.commands'"):
        await list_dead_letters(broker.dead_letters, QUEUES, queue="nope.commands")
    # A queue the namespace's record does not name, but the broker has.
    assert await list_dead_letters(broker.dead_letters, QUEUES[:1], queue="payments.commands")


async def test_show_finds_a_message_in_any_queue_and_refuses_an_unknown_id(broker: Broker) -> None:
    await parked(broker, 2)

    [letter] = await show_dead_letter(broker.dead_letters, QUEUES, "p-1")
    assert (letter.queue, letter.reason) == ("payments.commands", "schema_mismatch")
    with pytest.raises(RequestRefusedError, match="no dead letter with message id 'x-9'"):
        await show_dead_letter(broker.dead_letters, QUEUES, "x-9")


async def test_a_redriven_message_that_is_fixed_is_taken_once_and_leaves_the_dead_letters(
    broker: Broker,
) -> None:
    await parked(broker, 2)
    broker.fixed = {"e-1", "p-0"}

    moved = await redrive_dead_letters(broker.dead_letters, QUEUES, message_ids=["e-1", "p-0"])

    assert ids(moved) == ["e-1", "p-0"]
    await eventually(lambda: _now(broker.taken), lambda taken: len(taken) == 2)
    assert sorted(broker.taken) == ["e-1", "p-0"]
    assert ids(await list_dead_letters(broker.dead_letters, QUEUES)) == ["e-0", "p-1"]


async def test_a_redriven_message_still_bad_is_dead_lettered_again_and_nothing_is_lost(
    broker: Broker,
) -> None:
    await parked(broker, 2)

    moved = await redrive_dead_letters(broker.dead_letters, QUEUES)

    # Each was moved once (not round and round), and each is back with its reason.
    assert sorted(ids(moved)) == ["e-0", "e-1", "p-0", "p-1"]
    back = await eventually(
        lambda: list_dead_letters(broker.dead_letters, QUEUES), lambda d: len(d) == 4
    )
    assert sorted((d.message_id, d.reason) for d in back) == [
        (m, "schema_mismatch") for m in ("e-0", "e-1", "p-0", "p-1")
    ]
    assert broker.taken == []


async def test_redrive_of_an_unknown_id_moves_nothing(broker: Broker) -> None:
    await parked(broker, 1)
    broker.fixed = {"e-0"}

    with pytest.raises(RequestRefusedError, match="'nope'; nothing was moved"):
        await redrive_dead_letters(broker.dead_letters, QUEUES, message_ids=["e-0", "nope"])
    assert ids(await list_dead_letters(broker.dead_letters, QUEUES)) == ["e-0", "p-0"]


async def test_purge_drops_them_queue_by_queue(broker: Broker) -> None:
    await parked(broker, 2)

    dropped = await purge_dead_letters(broker.dead_letters, QUEUES, queue="payments.commands")
    assert dropped == {"payments.commands": 2}
    assert ids(await list_dead_letters(broker.dead_letters, QUEUES)) == ["e-0", "e-1"]
    assert await purge_dead_letters(broker.dead_letters, QUEUES) == {
        "coordinator.events": 2,
        "inventory.commands": 0,
        "payments.commands": 0,
    }
    assert await list_dead_letters(broker.dead_letters, QUEUES) == []


def test_a_dead_letter_as_json_has_its_body_as_text_or_base64() -> None:
    def letter(body: bytes) -> DeadLetter:
        headers = {"x-death-at": "2026-01-01T00:00:00+00:00"}
        return DeadLetter(
            queue="q",
            message_id="m",
            body=body,
            headers=headers,
            reason="r",
            detail="d",
            exchange="events",
            routing_key="k",
        )

    text: dict[str, Any] = dead_letter_json(letter(b'{"a": 1}'))
    assert (text["body"], text["dead_lettered_at"]) == ('{"a": 1}', "2026-01-01T00:00:00+00:00")
    assert dead_letter_json(letter(b"\xff\x00"))["body_base64"] == "/wA="


async def _now(value: T) -> T:
    return value


async def test_a_letter_whose_move_back_fails_stays_in_the_dead_letters() -> None:
    """The broker refuses the copy (its queue was deleted): the letter is not taken out."""
    rabbit = await connect_rabbit(namespace(), delivery_limit=3)
    broker = Broker(rabbit, RabbitDeadLetters(rabbit))
    try:
        await parked(broker, 1)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection, connection.channel() as channel:
            await channel.queue_delete(f"{rabbit.namespace}.payments.commands", if_unused=False)

        with pytest.raises(UnroutableError):
            await redrive_dead_letters(broker.dead_letters, QUEUES, queue="payments.commands")
        kept = await list_dead_letters(broker.dead_letters, QUEUES, queue="payments.commands")
        assert [(d.message_id, d.reason) for d in kept] == [("p-0", "schema_mismatch")]
    finally:
        await rabbit.delete_namespace(set(QUEUES))
        await rabbit.close()
