"""MemoryTransport: what the contract suite cannot see.

The shared semantics (routing, settling, redelivery, dead letters, competing
consumers, prefetch, stopping) are in tests/contract, which runs against this
transport too. Here: topic matching against its definition, the bookkeeping
behind ``drain`` (``ready``, ``backlog``, ``in_flight``, ``idle``), the
exact counts a broker leaves open, fault injection, and shutdown.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ports import assert_implements

from coordinator import UnroutableError
from coordinator.adapters.memory import MemoryTransport
from coordinator.adapters.memory._topic import topic_matches
from coordinator.ports import Delivery, Handler, Transport


async def _ack(delivery: Delivery) -> None:
    await delivery.ack()


def _collector(into: list[bytes]) -> Handler:
    async def handle(delivery: Delivery) -> None:
        into.append(delivery.body)
        await delivery.ack()

    return handle


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("inventory.*", "inventory.Reserve", True),
        ("inventory.*", "inventory", False),
        ("inventory.*", "inventory.Reserve.extra", False),
        ("inventory.Reserve", "inventory.Reserve", True),
        ("inventory.Reserve", "inventory.Release", False),
        ("*.TaskFailed", "place_order.TaskFailed", True),
        ("#", "anything.at.all", True),
        ("#", "one", True),
        ("place_order.#", "place_order", True),
        ("place_order.#", "place_order.TaskCompleted", True),
        ("place_order.#", "place_order.a.b", True),
        ("place_order.#", "other.a", False),
        ("#.failed", "a.b.failed", True),
        ("#.failed", "failed", True),
        ("#.failed", "a.failed.not", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("*.*", "a", False),
        ("*.*", "a.b", True),
        ("#.#", "a.b.c", True),
        ("*.#", "", False),
        ("#", "", True),
        ("", "", True),
        ("*", "", False),
        ("a.*.#", "a.b", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def _reference_match(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference_match(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and _reference_match(rest, key[1:])


@given(
    st.lists(st.sampled_from(["a", "b", "*", "#"]), max_size=5),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=5),
)
def test_topic_matching_agrees_with_the_definition(pattern: list[str], key: list[str]) -> None:
    assert topic_matches(".".join(pattern), ".".join(key)) is _reference_match(pattern, key)


def test_it_implements_the_transport_port() -> None:
    assert_implements(MemoryTransport(), Transport)


async def test_published_records_what_was_routed_only() -> None:
    transport = MemoryTransport()
    await transport.subscribe("q", "events", "order.*", _ack)
    with pytest.raises(UnroutableError):
        await transport.publish("commands", "order.Placed", b"x", message_id="m-0")
    await transport.publish("lifecycle", "saga.completed", b"x", message_id="m-1", mandatory=False)
    await transport.publish("events", "order.Placed", b"x", message_id="m-2")
    await transport.drain()
    assert [p.message_id for p in transport.published] == ["m-2"]


async def test_a_crashing_handler_is_redelivered_then_dead_lettered() -> None:
    transport = MemoryTransport(delivery_limit=3)
    counts: list[int] = []

    async def crash(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        raise RuntimeError("boom")

    await transport.subscribe("q", "commands", "#", crash)
    await transport.publish("commands", "a.b", b"x", message_id="m-1", headers={"k": "v"})
    await transport.drain()
    assert counts == [1, 2, 3]
    [dead] = transport.dead_letters
    assert (dead.queue, dead.body, dead.reason, dead.delivery_count) == (
        "q",
        b"x",
        "delivery_limit",
        3,
    )
    assert dead.message_id == "m-1"
    assert dead.headers["x-death-reason"] == "delivery_limit"
    assert "RuntimeError: boom" in dead.headers["x-death-detail"]
    assert dead.headers["k"] == "v"
    assert len(transport.handler_errors) == 3


async def test_requeue_past_the_limit_is_dead_lettered() -> None:
    transport = MemoryTransport(delivery_limit=2)

    async def requeue(delivery: Delivery) -> None:
        await delivery.requeue()

    await transport.subscribe("q", "commands", "#", requeue)
    await transport.publish("commands", "a.b", b"x", message_id="m-1")
    await transport.drain()
    [dead] = transport.dead_letters
    assert (dead.reason, dead.delivery_count) == ("delivery_limit", 2)


async def test_prefetch_bounds_concurrent_handlers() -> None:
    transport = MemoryTransport()
    running = 0
    peak = 0
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        await delivery.ack()

    await transport.subscribe("q", "commands", "#", slow, prefetch=2)
    for i in range(5):
        await transport.publish("commands", "a.b", b"x", message_id=f"m-{i}")
    for _ in range(5):
        await asyncio.sleep(0)
    assert (running, transport.ready("q")) == (2, [b"x"] * 3)
    assert (transport.in_flight, transport.backlog, transport.idle) == (2, 3, False)
    release.set()
    await transport.drain()
    assert peak == 2
    assert (transport.in_flight, transport.backlog, transport.idle) == (0, 0, True)
    assert transport.ready("q") == []


async def test_messages_published_before_a_consumer_wait_in_the_queue() -> None:
    transport = MemoryTransport()
    await transport.declare("q", "commands", "svc.*")
    await transport.publish("commands", "svc.A", b"1", message_id="m-1")
    await transport.drain()  # a queue without consumers does not hold drain up
    assert transport.ready("q") == [b"1"]
    assert (transport.backlog, transport.idle) == (0, True)

    got: list[bytes] = []
    subscription = await transport.subscribe("q", "commands", "svc.*", _collector(got))
    await transport.drain()
    assert got == [b"1"]

    # A queue outlives its consumers, as a durable queue does.
    await subscription.stop()
    await transport.publish("commands", "svc.A", b"2", message_id="m-2")
    assert transport.ready("q") == [b"2"]
    await transport.subscribe("q", "commands", "svc.*", _collector(got))
    await transport.drain()
    assert got == [b"1", b"2"]


async def test_drain_waits_for_a_cascade_of_messages() -> None:
    transport = MemoryTransport()
    replies: list[bytes] = []

    async def participant(delivery: Delivery) -> None:
        await asyncio.sleep(0)
        await transport.publish("events", "saga.TaskCompleted", delivery.body, message_id="r")
        await delivery.ack()

    await transport.subscribe("svc.commands", "commands", "svc.*", participant)
    await transport.subscribe("coordinator", "events", "#", _collector(replies))
    for i in range(20):
        await transport.publish("commands", "svc.Do", str(i).encode(), message_id=f"m-{i}")
    await transport.drain()
    assert len(replies) == 20


async def test_drain_returns_at_once_when_idle() -> None:
    transport = MemoryTransport()
    assert transport.idle
    await asyncio.wait_for(transport.drain(), timeout=1)


async def test_drain_waits_for_a_stopped_subscriptions_handlers() -> None:
    transport = MemoryTransport()
    release = asyncio.Event()
    done: list[bool] = []

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        done.append(True)
        await delivery.ack()

    subscription = await transport.subscribe("q", "commands", "#", slow)
    await transport.publish("commands", "a.b", b"x", message_id="m-1")
    await asyncio.sleep(0)
    stopping = asyncio.create_task(subscription.stop())
    draining = asyncio.create_task(transport.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    release.set()
    await asyncio.gather(stopping, draining)
    assert done == [True]


async def test_injected_publish_failure() -> None:
    transport = MemoryTransport()
    await transport.subscribe("q", "commands", "#", _ack)
    transport.fail_next_publish()
    with pytest.raises(ConnectionError):
        await transport.publish("commands", "a.b", b"x", message_id="m-1")
    await transport.publish("commands", "a.b", b"x", message_id="m-1")
    assert len(transport.published) == 1


async def test_close_stops_consumers_and_refuses_use() -> None:
    transport = MemoryTransport()
    got: list[bytes] = []
    await transport.subscribe("q", "commands", "#", _collector(got))
    await transport.publish("commands", "a.b", b"x", message_id="m-1")
    await transport.close()
    assert got == [b"x"]
    with pytest.raises(RuntimeError, match="closed"):
        await transport.publish("commands", "a.b", b"y", message_id="m-2")
    with pytest.raises(RuntimeError, match="closed"):
        await transport.subscribe("q", "commands", "#", _ack)


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="delivery_limit"):
        MemoryTransport(delivery_limit=0)
    transport = MemoryTransport()
    with pytest.raises(ValueError, match="prefetch"):
        await transport.subscribe("q", "commands", "#", _ack, prefetch=0)
    with pytest.raises(ValueError, match="exchange"):
        await transport.subscribe("q", "nope", "#", _ack)  # type: ignore[arg-type]


async def test_a_cancelled_handler_returns_its_message_to_the_head_of_the_queue() -> None:
    transport = MemoryTransport()
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    subscription = await transport.subscribe("q", "commands", "#", stuck, prefetch=1)
    await transport.publish("commands", "a.b", b"1", message_id="m-1")
    await transport.publish("commands", "a.b", b"2", message_id="m-2")
    await started.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await subscription.stop()
    assert transport.ready("q") == [b"1", b"2"]
    assert transport.in_flight == 0

    counts: list[tuple[bytes, int]] = []

    async def record(delivery: Delivery) -> None:
        counts.append((delivery.body, delivery.delivery_count))
        await delivery.ack()

    await transport.subscribe("q", "commands", "#", record)
    await transport.drain()
    assert counts == [(b"1", 2), (b"2", 1)]


def test_loop_shutdown_with_handlers_in_flight_starts_no_new_handler() -> None:
    # asyncio.run cancels the stuck handlers; a handler started in their place
    # would never be awaited, and its warning would fail the test.
    started: list[bytes] = []

    async def stuck(delivery: Delivery) -> None:
        started.append(delivery.body)
        await asyncio.Event().wait()

    async def scenario() -> MemoryTransport:
        transport = MemoryTransport()
        await transport.subscribe("q", "commands", "#", stuck, prefetch=1)
        for i in range(3):
            await transport.publish("commands", "a.b", b"%d" % i, message_id=f"m-{i}")
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(scenario())
    assert started == [b"0"]
    assert transport.ready("q") == [b"0", b"1", b"2"]
