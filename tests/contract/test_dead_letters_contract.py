"""One contract for the ``DeadLetters`` port, run against memory and a real RabbitMQ.

Messages reach the dead letters the way they do in service: a handler parks
them (``Delivery.dead_letter``) or gives them back until the delivery limit.
Waits are on what the port reports, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from ports import assert_implements

from coordinator.ports import DeadLetter, DeadLetters, Delivery, Transport

T = TypeVar("T")

WAIT = 10.0  # seconds; generous, a passing test never waits this long


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Poll ``probe`` until ``done`` holds of its result."""
    async with asyncio.timeout(WAIT):
        while True:
            result = await probe()
            if done(result):
                return result
            await asyncio.sleep(0.02)


class Parker:
    """A handler that parks every message, unless it is one it was told to take."""

    def __init__(self, take: Callable[[Delivery], bool] = lambda delivery: False) -> None:
        self.taken: list[Delivery] = []
        self.take = take
        self._arrived = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        if self.take(delivery):
            self.taken.append(delivery)
            self._arrived.set()
            await delivery.ack()
        else:
            await delivery.dead_letter("malformed_json", f"cannot read {delivery.message_id}")

    async def wait_for(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(WAIT):
            while len(self.taken) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.taken


async def park(
    transport: Transport, dead_letters: DeadLetters, count: int, *, queue: str = "q"
) -> Parker:
    """Publish ``count`` messages m-0, m-1, ... and wait until all are dead letters."""
    parker = Parker()
    await transport.subscribe(queue, "commands", "svc.*", parker)
    for n in range(count):
        await transport.publish(
            "commands", "svc.Do", b"%d" % n, message_id=f"m-{n}", headers={"k": f"v{n}"}
        )
    await eventually(lambda: dead_letters.list(queue), lambda d: len(d) == count)
    return parker


def ids(letters: Sequence[DeadLetter]) -> list[str]:
    return [letter.message_id for letter in letters]


def test_it_implements_the_port(dead_letters: DeadLetters) -> None:
    assert_implements(dead_letters, DeadLetters)


async def test_a_queue_never_declared_has_no_dead_letters(dead_letters: DeadLetters) -> None:
    assert await dead_letters.list("never.declared") == []
    assert await dead_letters.redrive("never.declared") == []


async def test_a_dead_letter_says_what_and_why(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    await park(transport, dead_letters, 1)

    [letter] = await dead_letters.list("q")
    assert (letter.queue, letter.message_id, letter.body) == ("q", "m-0", b"0")
    assert (letter.reason, letter.detail) == ("malformed_json", "cannot read m-0")
    assert (letter.exchange, letter.routing_key) == ("commands", "svc.Do")
    assert letter.headers["k"] == "v0"
    assert letter.headers["x-death-reason"] == "malformed_json"
    assert letter.headers["x-death-detail"] == "cannot read m-0"
    assert await dead_letters.list("other") == []


async def test_a_message_over_the_delivery_limit_is_listed_as_such(
    transport: Transport, dead_letters: DeadLetters, delivery_limit: int
) -> None:
    async def give_back(delivery: Delivery) -> None:
        await delivery.requeue()

    await transport.subscribe("q", "commands", "svc.*", give_back)
    await transport.publish("commands", "svc.Do", b"again", message_id="m-1")

    [letter] = await eventually(lambda: dead_letters.list("q"), bool)
    assert (letter.message_id, letter.body, letter.reason) == ("m-1", b"again", "delivery_limit")
    assert f"delivered {delivery_limit} times" in letter.detail
    assert (letter.exchange, letter.routing_key) == ("commands", "svc.Do")


async def test_listing_keeps_them_in_order_unless_removed(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    await park(transport, dead_letters, 3)

    assert ids(await dead_letters.list("q")) == ["m-0", "m-1", "m-2"]
    assert ids(await dead_letters.list("q")) == ["m-0", "m-1", "m-2"]  # looking takes nothing
    assert ids(await dead_letters.list("q", limit=2)) == ["m-0", "m-1"]
    assert ids(await dead_letters.list("q", limit=2, remove=True)) == ["m-0", "m-1"]
    assert ids(await dead_letters.list("q")) == ["m-2"]
    assert ids(await dead_letters.list("q", remove=True)) == ["m-2"]
    assert await dead_letters.list("q") == []


async def test_redrive_moves_them_back_to_their_queue_as_new(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    parker = await park(transport, dead_letters, 2)

    # From now on the handler takes what it is given.
    parker.take = lambda delivery: True
    moved = await dead_letters.redrive("q")

    assert ids(moved) == ["m-0", "m-1"]
    assert [letter.reason for letter in moved] == ["malformed_json"] * 2
    again = await parker.wait_for(2)
    assert [(d.message_id, d.body, d.delivery_count) for d in again] == [
        ("m-0", b"0", 1),
        ("m-1", b"1", 1),
    ]
    assert [d.headers["k"] for d in again] == ["v0", "v1"]
    assert not any("x-death-reason" in d.headers for d in again)
    # It answers to where it was first published, not the way it came back.
    assert {(d.exchange, d.routing_key) for d in again} == {("commands", "svc.Do")}
    assert await dead_letters.list("q") == []


async def test_redrive_moves_only_those_named_and_the_others_keep_their_place(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    parker = await park(transport, dead_letters, 4)

    parker.take = lambda delivery: True
    moved = await dead_letters.redrive("q", ["m-1", "m-3", "unknown"])

    assert ids(moved) == ["m-1", "m-3"]
    assert [d.message_id for d in await parker.wait_for(2)] == ["m-1", "m-3"]
    assert ids(await dead_letters.list("q")) == ["m-0", "m-2"]


async def test_redrive_moves_at_most_the_limit(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    parker = await park(transport, dead_letters, 3)

    parker.take = lambda delivery: True
    assert ids(await dead_letters.redrive("q", limit=2)) == ["m-0", "m-1"]
    await parker.wait_for(2)
    assert ids(await dead_letters.list("q")) == ["m-2"]


async def test_redrive_goes_to_that_queue_only(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    # Two queues take the same routing key: a moved-back letter reaches only its own.
    parker = await park(transport, dead_letters, 1)
    bystander: list[str] = []

    async def record(delivery: Delivery) -> None:
        bystander.append(delivery.message_id)
        await delivery.ack()

    await transport.subscribe("bystander", "commands", "svc.*", record)
    parker.take = lambda delivery: True
    await dead_letters.redrive("q")
    await parker.wait_for(1)
    # A marker through the exchange reaches the bystander after anything sent before it.
    await transport.publish("commands", "svc.Do", b"marker", message_id="marker")
    await eventually(lambda: _const(bystander), lambda seen: "marker" in seen)
    assert bystander == ["marker"]


async def test_a_moved_back_letter_parked_again_says_where_it_came_from(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    await park(transport, dead_letters, 1)

    await dead_letters.redrive("q")  # the handler parks it again
    [letter] = await eventually(lambda: dead_letters.list("q"), bool)
    assert (letter.message_id, letter.reason) == ("m-0", "malformed_json")
    assert (letter.exchange, letter.routing_key) == ("commands", "svc.Do")


@pytest.mark.parametrize("limit", [0, 1])
async def test_a_limit_is_respected_when_listing(
    transport: Transport, dead_letters: DeadLetters, limit: int
) -> None:
    await park(transport, dead_letters, 2)
    assert len(await dead_letters.list("q", limit=limit)) == limit


async def _const(value: T) -> T:
    return value


async def test_purge_drops_the_dead_letters_of_that_queue_only(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    await park(transport, dead_letters, 3)
    # Both queues are bound by svc.*: the second's message is parked by q's handler too.
    await park(transport, dead_letters, 1, queue="other")
    await eventually(lambda: dead_letters.list("q"), lambda d: len(d) == 4)

    assert await dead_letters.purge("q") == 4
    assert await dead_letters.list("q") == []
    assert ids(await dead_letters.list("other")) == ["m-0"]
    assert await dead_letters.purge("q") == 0
    assert await dead_letters.purge("never.declared") == 0


async def test_a_queue_exists_once_declared_whether_or_not_it_has_dead_letters(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    assert not await dead_letters.exists("q")
    await transport.declare("q", "commands", "svc.*")
    assert await dead_letters.exists("q")
    assert await dead_letters.list("q") == []
    assert not await dead_letters.exists("never.declared")


async def test_a_dead_letter_says_when_it_was_parked(
    transport: Transport, dead_letters: DeadLetters, delivery_limit: int
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)  # the broker stamps whole seconds
    await park(transport, dead_letters, 1)

    async def give_back(delivery: Delivery) -> None:
        await delivery.requeue()

    await transport.subscribe("r", "commands", "again.*", give_back)
    await transport.publish("commands", "again.Do", b"x", message_id="m-r")
    [parked] = await dead_letters.list("q")
    [over_limit] = await eventually(lambda: dead_letters.list("r"), bool)
    for letter in (parked, over_limit):
        assert letter.dead_lettered_at is not None
        assert before <= letter.dead_lettered_at <= datetime.now(UTC)
