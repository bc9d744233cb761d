"""One contract for the ``Transport`` port, run against memory and a real RabbitMQ.

The in-memory transport is the reference; every test here holds for both.
Queues exist once subscribed (the port has no other way to declare one), so
each test subscribes before it publishes. Waits are on what the handlers
report, never fixed sleeps, except where a test proves that nothing arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from contracts import SagaError
from coordinator import UnroutableError
from coordinator.ports import DeadLetters, Delivery, Transport

T = TypeVar("T")
Peer = Callable[[], Awaitable[Transport]]

WAIT = 10.0  # seconds; generous, a passing test never waits this long
QUIET = 0.3  # seconds during which nothing must arrive


async def dead_of(dead_letters: DeadLetters, queue: str) -> list[tuple[str, str, bytes]]:
    """``(reason, detail, body)`` of the dead letters of ``queue``, oldest first."""
    return [(d.reason, d.detail, d.body) for d in await dead_letters.list(queue)]


class Inbox:
    """A handler that records each delivery, then acks it (unless told otherwise)."""

    def __init__(self, settle: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._arrived = asyncio.Condition()
        self._settle = settle

    async def __call__(self, delivery: Delivery) -> None:
        async with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        if self._settle is None:
            await delivery.ack()
        else:
            await self._settle(delivery)

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for d in self.deliveries]

    async def wait_for(self, count: int) -> list[Delivery]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.deliveries) >= count), WAIT
            )
        return self.deliveries


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Poll ``probe`` until ``done`` holds of its result."""
    async with asyncio.timeout(WAIT):
        while True:
            result = await probe()
            if done(result):
                return result
            await asyncio.sleep(0.02)


# -- publish and route ---------------------------------------------------------------


async def test_a_subscriber_receives_what_is_published(transport: Transport) -> None:
    inbox = Inbox()
    await transport.subscribe("svc.commands", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b'{"n":1}', message_id="m-1")
    [delivery] = await inbox.wait_for(1)
    assert (delivery.body, delivery.message_id, delivery.delivery_count) == (b'{"n":1}', "m-1", 1)


async def test_headers_and_message_id_survive(transport: Transport) -> None:
    inbox = Inbox()
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "saga-id": "order-42 ünïcode",
        "empty": "",
    }
    await transport.subscribe("q", "events", "#", inbox)
    await transport.publish("events", "a.b", b"{}", message_id="order-42:1", headers=headers)
    [delivery] = await inbox.wait_for(1)
    assert delivery.message_id == "order-42:1"
    assert dict(delivery.headers) == headers


async def test_a_delivery_says_where_it_was_published(transport: Transport) -> None:
    inbox = Inbox()
    await transport.subscribe("q", "events", "#", inbox)
    await transport.publish("events", "reply.svc.s-1.TaskCompleted", b"{}", message_id="m-1")
    [delivery] = await inbox.wait_for(1)
    assert (delivery.exchange, delivery.routing_key) == ("events", "reply.svc.s-1.TaskCompleted")


async def test_topic_patterns_route_by_words(transport: Transport) -> None:
    inboxes = {name: Inbox() for name in ("one_word", "any", "suffix", "prefix")}
    await transport.subscribe("one_word", "events", "order.*", inboxes["one_word"])
    await transport.subscribe("any", "events", "#", inboxes["any"])
    await transport.subscribe("suffix", "events", "*.TaskFailed", inboxes["suffix"])
    await transport.subscribe("prefix", "events", "order.#", inboxes["prefix"])
    # A second binding of the same queue: still one copy per queue.
    await transport.subscribe("one_word", "events", "#.TaskCompleted", inboxes["one_word"])

    keys = ["order.TaskCompleted", "order.TaskFailed", "order.a.b", "order", "pay.TaskFailed"]
    for n, key in enumerate(keys):
        await transport.publish("events", key, key.encode(), message_id=f"m-{n}")

    expected = {
        "one_word": [b"order.TaskCompleted", b"order.TaskFailed"],
        "any": [key.encode() for key in keys],
        "suffix": [b"order.TaskFailed", b"pay.TaskFailed"],
        "prefix": [b"order.TaskCompleted", b"order.TaskFailed", b"order.a.b", b"order"],
    }
    # A marker every pattern matches, published last: each queue is FIFO, so once
    # it is in every inbox, nothing published before it is still on its way.
    await transport.publish("events", "order.TaskFailed", b"marker", message_id="m-marker")
    for name, bodies in expected.items():
        await inboxes[name].wait_for(len(bodies) + 1)
    assert {
        name: sorted(b for b in inbox.bodies if b != b"marker") for name, inbox in inboxes.items()
    } == {name: sorted(bodies) for name, bodies in expected.items()}


async def test_an_unroutable_mandatory_message_raises(transport: Transport) -> None:
    with pytest.raises(UnroutableError, match=r"inventory\.Reserve") as caught:
        await transport.publish("commands", "inventory.Reserve", b"{}", message_id="m-1")
    assert isinstance(caught.value, SagaError)

    # Bound on another exchange, or by a pattern that does not match: still unroutable.
    await transport.subscribe("q1", "events", "inventory.*", Inbox())
    await transport.subscribe("q2", "commands", "payments.*", Inbox())
    with pytest.raises(UnroutableError):
        await transport.publish("commands", "inventory.Reserve", b"{}", message_id="m-2")


async def test_an_unroutable_optional_message_is_dropped(transport: Transport) -> None:
    await transport.publish(
        "lifecycle", "saga.completed", b"lost", message_id="m-1", mandatory=False
    )
    # Dropped, not kept: a queue bound afterwards does not get it.
    inbox = Inbox()
    await transport.subscribe("late", "lifecycle", "#", inbox)
    await transport.publish("lifecycle", "saga.completed", b"kept", message_id="m-2")
    # "kept" went out after "lost": had "lost" been kept, it would have come first.
    await inbox.wait_for(1)
    assert inbox.bodies == [b"kept"]


# -- settle -------------------------------------------------------------------------


async def test_an_acked_message_is_gone(transport: Transport) -> None:
    first = Inbox()
    subscription = await transport.subscribe("q", "commands", "svc.*", first)
    await transport.publish("commands", "svc.Do", b"once", message_id="m-1")
    await first.wait_for(1)
    await subscription.stop()

    # A queue is FIFO: had "once" come back, it would arrive before the marker.
    second = Inbox()
    await transport.subscribe("q", "commands", "svc.*", second)
    await transport.publish("commands", "svc.Do", b"marker", message_id="m-2")
    await second.wait_for(1)
    assert second.bodies == [b"marker"]


async def test_a_requeued_message_comes_again_counted(transport: Transport) -> None:
    async def requeue_first(delivery: Delivery) -> None:
        if delivery.delivery_count == 1:
            await delivery.requeue()
        else:
            await delivery.ack()

    inbox = Inbox(requeue_first)
    await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"again", message_id="m-1")
    deliveries = await inbox.wait_for(2)
    assert [(d.body, d.message_id, d.delivery_count) for d in deliveries] == [
        (b"again", "m-1", 1),
        (b"again", "m-1", 2),
    ]


async def test_an_unsettled_message_comes_again(transport: Transport) -> None:
    async def forget_first(delivery: Delivery) -> None:
        if delivery.delivery_count > 1:
            await delivery.ack()

    inbox = Inbox(forget_first)
    await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"x", message_id="m-1")
    assert [d.delivery_count for d in await inbox.wait_for(2)] == [1, 2]


async def test_a_delivery_is_settled_once(transport: Transport) -> None:
    errors: list[Exception] = []

    async def ack_twice(delivery: Delivery) -> None:
        await delivery.ack()
        try:
            await delivery.ack()
        except RuntimeError as exc:
            errors.append(exc)

    inbox = Inbox(ack_twice)
    await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"x", message_id="m-1")
    await inbox.wait_for(1)
    await eventually(lambda: _const(errors), bool)
    assert "already settled" in str(errors[0])


async def test_a_failing_handler_ends_in_the_dead_letters(
    transport: Transport, dead_letters: DeadLetters, delivery_limit: int
) -> None:
    async def fail(delivery: Delivery) -> None:
        raise ValueError("cannot handle this")

    inbox = Inbox(fail)
    await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"poison", message_id="m-1")

    [(reason, detail, body)] = await eventually(lambda: dead_of(dead_letters, "q"), bool)
    assert (reason, body) == ("delivery_limit", b"poison")
    assert "ValueError" in detail
    assert "cannot handle this" in detail
    limit = delivery_limit
    assert [d.delivery_count for d in inbox.deliveries] == list(range(1, limit + 1))


async def test_dead_letter_parks_at_once_with_the_reason(
    transport: Transport, dead_letters: DeadLetters
) -> None:
    async def reject(delivery: Delivery) -> None:
        await delivery.dead_letter("malformed_json", "expected value at line 1 column 1")

    inbox = Inbox(reject)
    await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"{oops", message_id="m-1")

    dead = await eventually(lambda: dead_of(dead_letters, "q"), bool)
    assert dead == [("malformed_json", "expected value at line 1 column 1", b"{oops")]
    # Had it been given back instead, it would be in the queue ahead of a marker.
    await transport.publish("commands", "svc.Do", b"marker", message_id="m-2")
    await inbox.wait_for(2)
    assert [(d.body, d.delivery_count) for d in inbox.deliveries] == [(b"{oops", 1), (b"marker", 1)]
    assert await dead_of(dead_letters, "other") == []


# -- consumers ------------------------------------------------------------------------


async def test_competing_consumers_share_a_queue(transport: Transport, peer: Peer) -> None:
    async def slowly(delivery: Delivery) -> None:
        await asyncio.sleep(0.02)
        await delivery.ack()

    first, second = Inbox(slowly), Inbox(slowly)
    peer_transport = await peer()
    await transport.subscribe("work", "commands", "svc.*", first, prefetch=1)
    await peer_transport.subscribe("work", "commands", "svc.*", second, prefetch=1)
    for n in range(10):
        await transport.publish("commands", "svc.Do", str(n).encode(), message_id=f"m-{n}")

    await eventually(lambda: _const(len(first.bodies) + len(second.bodies)), lambda n: n >= 10)
    await asyncio.sleep(QUIET)
    assert sorted(first.bodies + second.bodies) == sorted(str(n).encode() for n in range(10))
    assert first.bodies
    assert second.bodies


async def test_prefetch_bounds_the_handlers_running(transport: Transport) -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        await delivery.ack()

    inbox = Inbox(hold)
    await transport.subscribe("q", "commands", "svc.*", inbox, prefetch=2)
    for n in range(6):
        await transport.publish("commands", "svc.Do", b"x", message_id=f"m-{n}")

    await inbox.wait_for(2)
    await asyncio.sleep(QUIET)
    assert (running, len(inbox.deliveries)) == (2, 2)
    release.set()
    await inbox.wait_for(6)
    assert most == 2


async def test_stop_waits_for_the_handlers_in_flight(transport: Transport) -> None:
    release = asyncio.Event()
    finished: list[bytes] = []

    async def hold(delivery: Delivery) -> None:
        await release.wait()
        await delivery.ack()
        finished.append(delivery.body)

    inbox = Inbox(hold)
    subscription = await transport.subscribe("q", "commands", "svc.*", inbox)
    await transport.publish("commands", "svc.Do", b"slow", message_id="m-1")
    await inbox.wait_for(1)

    stopping = asyncio.create_task(subscription.stop())
    await asyncio.sleep(QUIET)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, WAIT)
    assert finished == [b"slow"]

    # Stopped: nothing new reaches it; the queue keeps the message for the next consumer.
    await transport.publish("commands", "svc.Do", b"later", message_id="m-2")
    successor = Inbox()
    await transport.subscribe("q", "commands", "svc.*", successor)
    await successor.wait_for(1)
    assert successor.bodies == [b"later"]
    assert inbox.bodies == [b"slow"]


async def _const(value: T) -> T:
    return value
