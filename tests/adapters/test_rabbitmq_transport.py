"""RabbitTransport against the real broker: what the contract suite cannot see.

The shared semantics are in tests/contract/test_transport_contract.py. Here:
the declared topology (quorum, delivery limit, dead-lettering) and its export,
confirms, the broker's own dead-lettering, errors, and recovery of a consumer
whose channel the broker closed. Reconnecting after a broker restart is the
chaos suite's.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq
import pytest
import servers
from ports import assert_implements

from contracts import ContractError, SagaError
from coordinator import PublishFailedError, UnroutableError
from coordinator.adapters.rabbitmq import (
    RabbitDeadLetters,
    RabbitTransport,
    TopologyMismatchError,
    definitions,
)
from coordinator.adapters.rabbitmq._topology import queue_arguments
from coordinator.ports import Delivery, Subscription, Transport

WAIT = 10.0


@pytest.fixture
def namespace() -> str:
    return servers.namespace()


@pytest.fixture
async def connect(namespace: str) -> AsyncIterator[Callable[..., Awaitable[RabbitTransport]]]:
    """Connects transports to the test namespace; deletes it afterwards."""
    opened: list[RabbitTransport] = []

    async def connect(**options: Any) -> RabbitTransport:
        options.setdefault("delivery_limit", 3)
        transport = await servers.connect_rabbit(namespace, **options)
        opened.append(transport)
        return transport

    yield connect
    queues = {queue for transport in opened for queue in transport.queues}
    for transport in opened:
        await transport.close()
    if opened:
        cleaner = await servers.connect_rabbit(namespace)
        await cleaner.delete_namespace(queues)
        await cleaner.close()


@pytest.fixture
async def amqp() -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A plain aio-pika connection, to look at the broker from outside the transport."""
    connection = await servers.connect_amqp()
    yield connection
    await connection.close()


def _run_rabbitmqctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [servers.require_program("rabbitmqctl"), "-q", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def rabbitmqctl() -> Callable[..., str]:
    """Runs rabbitmqctl against the test node: a skip (a failure under CI) when it
    is not installed or cannot reach the node; any command that then exits
    non-zero is a failure that shows its stderr, since the node was there and
    refused what we gave it (our exported topology, say)."""
    ping = _run_rabbitmqctl("ping")
    if ping.returncode != 0:
        servers.unavailable("the RabbitMQ node for rabbitmqctl", RuntimeError(ping.stderr.strip()))

    def run(*args: str, stdin: str | None = None) -> str:
        result = _run_rabbitmqctl(*args, stdin=stdin)
        if result.returncode != 0:
            pytest.fail(
                f"rabbitmqctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}",
                pytrace=False,
            )
        return result.stdout

    return run


async def _ack(delivery: Delivery) -> None:
    await delivery.ack()


async def _message_count(amqp: aio_pika.abc.AbstractRobustConnection, name: str) -> int:
    async with amqp.channel() as channel:
        declared = await channel.declare_queue(name, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


# -- topology -------------------------------------------------------------------------


async def test_it_implements_the_transport_port(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    assert_implements(await connect(), Transport)


async def test_queues_are_quorum_with_delivery_limit_and_dead_lettering(
    connect: Callable[..., Awaitable[RabbitTransport]],
    namespace: str,
    rabbitmqctl: Callable[..., str],
) -> None:
    transport = await connect(delivery_limit=5)
    await transport.subscribe("inventory.commands", "commands", "inventory.*", _ack)

    listed = json.loads(
        rabbitmqctl("list_queues", "name", "type", "arguments", "--formatter", "json")
    )
    queues = {q["name"]: q for q in listed if q["name"].startswith(f"{namespace}.")}
    main = queues[f"{namespace}.inventory.commands"]
    assert main["type"] == "quorum"
    assert dict(_pairs(main["arguments"])) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 4,  # RabbitMQ counts returns: 4 returns, 5 deliveries
        "x-dead-letter-exchange": f"{namespace}.dead",
        "x-dead-letter-routing-key": "inventory.commands",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert queues[f"{namespace}.inventory.commands.dead"]["type"] == "classic"


def _pairs(arguments: Any) -> list[tuple[str, Any]]:
    # rabbitmqctl's JSON renders a table as [key, type, value] triples (3.10) or a dict.
    if isinstance(arguments, dict):
        return list(arguments.items())
    return [(str(entry[0]), entry[-1]) for entry in arguments]


async def test_declarations_are_idempotent(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    first = await connect()
    second = await connect()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(delivery: Delivery) -> None:
        await received.put(delivery.body)
        await delivery.ack()

    await first.declare("q", "events", "a.*")
    await first.subscribe("q", "events", "a.*", collect)
    await second.subscribe("q", "events", "a.*", collect)
    await second.publish("events", "a.b", b"once", message_id="m-1")
    assert await asyncio.wait_for(received.get(), WAIT) == b"once"


async def test_other_arguments_for_an_existing_queue_are_refused(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    await (await connect(delivery_limit=3)).subscribe("q", "events", "#", _ack)
    other = await connect(delivery_limit=4)
    with pytest.raises(TopologyMismatchError, match="x-delivery-limit") as caught:
        await other.subscribe("q", "events", "#", _ack)
    assert isinstance(caught.value, SagaError)
    # The transport is still usable afterwards.
    await other.publish("events", "x", b"{}", message_id="m-1")


async def test_exported_definitions_match_the_declarations(
    connect: Callable[..., Awaitable[RabbitTransport]],
    namespace: str,
    rabbitmqctl: Callable[..., str],
) -> None:
    exported = definitions(namespace, ["inventory", "payments"], delivery_limit=3)
    # From stdin: Debian's rabbitmqctl runs as the rabbitmq user, who cannot read pytest's tmp.
    rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(exported))
    listed = json.loads(rabbitmqctl("list_queues", "name", "--formatter", "json"))
    assert {q["name"] for q in listed} >= {q["name"] for q in exported["queues"]}

    # Declaring the same queues succeeds only if every argument is equal.
    transport = await connect(delivery_limit=3)
    await transport.subscribe("coordinator.events", "events", "#", _ack)
    await transport.subscribe("inventory.commands", "commands", "inventory.*", _ack)
    await transport.subscribe("payments.commands", "commands", "payments.*", _ack)
    await transport.publish("events", "anything", b"{}", message_id="m-1")
    assert {q["name"] for q in exported["queues"]} == {
        f"{namespace}.{q}{suffix}"
        for q in ("coordinator.events", "inventory.commands", "payments.commands")
        for suffix in ("", ".dead")
    }


def test_delivery_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="delivery_limit"):
        queue_arguments("ns", "q", delivery_limit=0)


# -- publishing -----------------------------------------------------------------------


async def test_a_publish_returns_once_the_queue_holds_the_message(
    connect: Callable[..., Awaitable[RabbitTransport]],
    namespace: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    transport = await connect()
    await transport.declare("parked", "commands", "svc.*")
    for n in range(20):
        await transport.publish("commands", "svc.Do", b"{}", message_id=f"m-{n}")
    assert await _message_count(amqp, f"{namespace}.parked") == 20


async def test_unroutable_is_a_saga_error_naming_the_exchange(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    transport = await connect()
    with pytest.raises(UnroutableError) as caught:
        await transport.publish("commands", "nobody.Home", b"{}", message_id="m-1")
    assert (caught.value.exchange, caught.value.routing_key) == ("commands", "nobody.Home")


async def test_a_nacked_publish_raises(
    connect: Callable[..., Awaitable[RabbitTransport]],
    namespace: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    transport = await connect()
    # A full queue that rejects publishes makes the broker nack.
    async with amqp.channel() as channel:
        full = await channel.declare_queue(
            f"{namespace}.full",
            durable=True,
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        await full.bind(f"{namespace}.events", "full.#")
        try:
            with pytest.raises(PublishFailedError) as caught:
                await transport.publish("events", "full.x", b"{}", message_id="m-1")
            assert (caught.value.reason, caught.value.retryable) == ("nacked", True)
        finally:
            await full.delete(if_unused=False, if_empty=False)


async def test_a_publish_that_is_never_confirmed_times_out(
    connect: Callable[..., Awaitable[RabbitTransport]], monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = await connect(publish_timeout=timedelta(milliseconds=50))
    exchange = transport._publisher._exchanges["events"]
    channel = await exchange.channel.get_underlay_channel()

    async def lost(frame: object) -> None:
        """The broker's confirm never arrives, as on a connection that went quiet."""

    monkeypatch.setattr(channel, "_on_confirm_frame", lost)
    with pytest.raises(PublishFailedError) as caught:
        await transport.publish("events", "x", b"{}", message_id="m-1", mandatory=False)
    assert caught.value.reason == "timeout"


async def test_oversized_messages_are_refused_and_dead_lettered(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    limited = await connect(max_message_size=10)
    with pytest.raises(ContractError) as caught:
        await limited.publish("events", "x", b"x" * 11, message_id="m-1")
    assert caught.value.reason == "too_large"

    handled: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.body)
        await delivery.ack()

    await limited.subscribe("q", "events", "#", handle)
    unlimited = await connect()
    await unlimited.publish("events", "x", b"x" * 11, message_id="big")
    await unlimited.publish("events", "x", b"small", message_id="small")
    letters = await _eventually(lambda: RabbitDeadLetters(limited).list("q"))
    assert [(d.message_id, d.reason) for d in letters] == [("big", "too_large")]
    assert handled == [b"small"]


# -- dead letters -----------------------------------------------------------------------


async def test_the_broker_dead_letters_after_the_delivery_limit(
    connect: Callable[..., Awaitable[RabbitTransport]],
    namespace: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """A consumer that dies mid-message never settles it: the broker's limit applies."""
    transport = await connect(delivery_limit=3)
    await transport.declare("q", "events", "#")
    await transport.publish("events", "order.placed", b"crash", message_id="m-1")

    deliveries = 0
    async with amqp.channel() as channel:
        queue = await channel.get_queue(f"{namespace}.q", ensure=False)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            deliveries += 1
            await message.reject(requeue=True)  # what a crash amounts to

    assert deliveries == 3
    [letter] = await _eventually(lambda: RabbitDeadLetters(transport).list("q"))
    assert (letter.reason, letter.message_id, letter.body) == ("delivery_limit", "m-1", b"crash")
    assert (letter.exchange, letter.routing_key) == ("events", "order.placed")
    assert "delivery_limit" in letter.detail


async def test_listing_dead_letters_keeps_them_in_order_unless_removed(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    transport = await connect()

    async def park(delivery: Delivery) -> None:
        await delivery.dead_letter("schema_mismatch", f"bad {delivery.message_id}")

    await transport.subscribe("q", "commands", "svc.*", park, prefetch=1)
    for n in range(3):
        await transport.publish(
            "commands", "svc.Do", b"{}", message_id=f"m-{n}", headers={"traceparent": "00-x"}
        )
    await _eventually(lambda: RabbitDeadLetters(transport).list("q"), count=3)

    first = await RabbitDeadLetters(transport).list("q")
    assert [d.message_id for d in first] == ["m-0", "m-1", "m-2"]
    assert first[0].headers["traceparent"] == "00-x"
    assert first[0].headers["x-original-queue"] == "q"
    assert (first[0].exchange, first[0].routing_key) == ("commands", "svc.Do")
    assert [d.message_id for d in await RabbitDeadLetters(transport).list("q", limit=2)] == [
        "m-0",
        "m-1",
    ]
    assert [d.message_id for d in await RabbitDeadLetters(transport).list("q", remove=True)] == [
        "m-0",
        "m-1",
        "m-2",
    ]
    assert await RabbitDeadLetters(transport).list("q") == []
    assert await RabbitDeadLetters(transport).list("never.declared") == []


# -- consumers --------------------------------------------------------------------------


async def test_a_consumer_resumes_after_the_broker_closes_its_channel(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    transport = await connect()
    counts: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
    channel_lost = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        await counts.put((delivery.body, delivery.delivery_count))
        if delivery.body == b"first" and delivery.delivery_count == 1:
            await channel_lost.wait()
        await delivery.ack()  # on a closed channel: logged, and the broker redelivers

    subscription = await transport.subscribe("q", "events", "#", handle)
    await transport.publish("events", "x", b"first", message_id="m-1")
    assert await asyncio.wait_for(counts.get(), WAIT) == (b"first", 1)

    # Acking an unknown delivery tag is a channel error: the broker closes the channel.
    underlay = await subscription._channel.get_underlay_channel()  # type: ignore[attr-defined]
    await underlay.basic_ack(delivery_tag=10_000)
    await _eventually(lambda: _const(underlay.is_closed))
    channel_lost.set()

    assert await asyncio.wait_for(counts.get(), WAIT) == (b"first", 2)
    await transport.publish("events", "x", b"second", message_id="m-2")
    assert await asyncio.wait_for(counts.get(), WAIT) == (b"second", 1)


async def test_namespaces_do_not_see_each_other(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    transport = await connect()
    other = await servers.connect_rabbit(servers.namespace())
    try:
        received: list[bytes] = []

        async def collect(delivery: Delivery) -> None:
            received.append(delivery.body)
            await delivery.ack()

        await transport.subscribe("q", "events", "#", collect)
        with pytest.raises(UnroutableError):
            await other.publish("events", "x", b"{}", message_id="m-1")
        assert received == []
    finally:
        await other.delete_namespace()
        await other.close()


async def test_deleting_the_namespace_removes_its_queues(
    namespace: str, amqp: aio_pika.abc.AbstractRobustConnection
) -> None:
    transport = await servers.connect_rabbit(namespace)
    await transport.subscribe("q", "events", "#", _ack)
    await transport.delete_namespace()
    await transport.close()
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await _message_count(amqp, f"{namespace}.q")
    with pytest.raises(RuntimeError, match="closed"):
        await transport.publish("events", "x", b"{}", message_id="m-1")


async def _eventually(probe: Callable[[], Awaitable[Any]], *, count: int = 1) -> Any:
    async with asyncio.timeout(WAIT):
        while True:
            result = await probe()
            if (len(result) >= count) if isinstance(result, list) else result:
                return result
            await asyncio.sleep(0.02)


async def _const(value: Any) -> Any:
    return value


class _Held:
    """A handler that keeps every delivery open until the test settles it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.release = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        await self.release.wait()

    async def publish_and_hold(self, transport: RabbitTransport, count: int) -> Subscription:
        """Subscribe to "q", publish ``count`` messages m0.., and hold them all."""
        subscription = await transport.subscribe("q", "events", "#", self, prefetch=20)
        for i in range(count):
            await transport.publish("events", "x", b"{}", message_id=f"m{i}")
        await self.arrived(count)
        return subscription

    async def arrived(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(WAIT):
            while len(self.deliveries) < count:
                await asyncio.sleep(0.01)
        return self.deliveries[:count]


@pytest.fixture
def basic_acks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Every ``basic.ack`` the client sends, as (delivery tag, multiple)."""
    sent: list[tuple[int, bool]] = []
    original = aiormq.Channel.basic_ack

    async def recorded(self: aiormq.Channel, delivery_tag: int, multiple: bool = False) -> None:
        sent.append((delivery_tag, multiple))
        await original(self, delivery_tag, multiple)

    monkeypatch.setattr(aiormq.Channel, "basic_ack", recorded)
    return sent


async def _left_in(transport: RabbitTransport, queue: str) -> list[str]:
    """The ids of the messages back in ``queue`` once its consumer is gone.

    A marker published now queues behind whatever is there: once it arrives,
    everything that was waiting has arrived before it.
    """
    peer = _Held()
    await transport.subscribe(queue, "events", "#", peer, prefetch=50)
    await transport.publish("events", "x", b"{}", message_id="marker")
    try:
        async with asyncio.timeout(WAIT):
            while not any(d.message_id == "marker" for d in peer.deliveries):
                await asyncio.sleep(0.01)
    finally:
        peer.release.set()
    return [d.message_id for d in peer.deliveries if d.message_id != "marker"]


async def test_acks_made_together_go_as_one_multiple_ack(
    connect: Callable[..., Awaitable[RabbitTransport]], basic_acks: list[tuple[int, bool]]
) -> None:
    transport = await connect()
    held = _Held()
    try:
        subscription = await held.publish_and_hold(transport, 10)
        await asyncio.gather(*(d.ack() for d in held.deliveries))
        assert basic_acks == [(10, True)]
    finally:
        held.release.set()
    await subscription.stop()
    assert await _left_in(transport, "q") == []  # all ten settled by the one ack


async def test_a_multiple_ack_never_covers_a_delivery_still_open_or_given_back(
    connect: Callable[..., Awaitable[RabbitTransport]], basic_acks: list[tuple[int, bool]]
) -> None:
    transport = await connect(delivery_limit=5)
    held = _Held()
    d = held.deliveries
    try:
        subscription = await held.publish_and_hold(transport, 6)
        await asyncio.gather(d[0].ack(), d[1].ack(), d[3].ack(), d[5].ack())
        # The run before the open m2 as one ack; after it, each alone.
        assert basic_acks == [(2, True), (4, False), (6, False)]
        await d[2].requeue()
        await d[4].ack()
        # Everything before it is settled now: it may be a multiple ack again.
        assert basic_acks[3:] == [(5, True)]
        redelivered = await held.arrived(7)
        assert redelivered[6].message_id == "m2"
        assert redelivered[6].delivery_count == 2
        await redelivered[6].ack()
    finally:
        held.release.set()
    await subscription.stop()
    assert await _left_in(transport, "q") == []


async def test_acks_of_handlers_finishing_in_any_order_settle_each_delivery_once(
    connect: Callable[..., Awaitable[RabbitTransport]],
) -> None:
    # Batches of acks overlap while earlier ones are still being written; a
    # multiple ack sent ahead of a single ack it covers would make the broker
    # close the channel (unknown delivery tag) and redeliver what was open.
    transport = await connect()
    rng = random.Random(7)
    seen: list[str] = []

    async def handle(delivery: Delivery) -> None:
        await asyncio.sleep(rng.random() * 0.01)
        seen.append(delivery.message_id)
        await delivery.ack()

    subscription = await transport.subscribe("q", "events", "#", handle, prefetch=64)
    count = 1500
    await asyncio.gather(
        *(transport.publish("events", "x", b"{}", message_id=f"m{i}") for i in range(count))
    )
    async with asyncio.timeout(60):
        while len(seen) < count:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a redelivery would show up now
    await subscription.stop()
    assert sorted(seen) == sorted(f"m{i}" for i in range(count))  # each exactly once
