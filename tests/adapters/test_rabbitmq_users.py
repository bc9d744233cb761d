"""``saga topology --export --users`` on the real broker: each user can do what its
process does, and the broker refuses the rest.

The definitions are imported with ``rabbitmqctl import_definitions`` on a namespace
of the test's own; the users it creates (and their queues) are deleted after.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import pytest
import servers

from coordinator.adapters.rabbitmq import RabbitTransport, definitions, user_definitions

SERVICES = ("inventory", "payments")


@dataclass(frozen=True)
class Imported:
    ns: str
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        parts = urlsplit(servers.AMQP_URL)
        host = f"{parts.hostname}:{parts.port or 5672}"
        return urlunsplit((parts.scheme, f"{user}:{self.passwords[user]}@{host}", "/", "", ""))


def _ctl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _set_password(user: str, password: str) -> None:
    # rabbitmqctl says the import "is asynchronous": the user may come a moment later.
    deadline = time.monotonic() + 10
    while True:
        try:
            return _ctl("change_password", user, password)
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def imported() -> Iterator[Imported]:
    # Once for the module: each rabbitmqctl call starts an Erlang VM (seconds).
    servers.require_program("rabbitmqctl")
    ns = servers.namespace()
    document = definitions(ns, SERVICES, delivery_limit=3) | user_definitions(ns, SERVICES)
    names = [str(user["name"]) for user in document["users"]]
    # By standard input: Debian's rabbitmqctl runs as the rabbitmq user, which
    # cannot read pytest's temporary directory.
    _ctl("import_definitions", stdin=json.dumps(document))
    try:
        passwords = {name: secrets.token_hex(8) for name in names}
        for name, password in passwords.items():
            _set_password(name, password)
        yield Imported(ns, passwords)
    finally:
        for name in names:
            _ctl("delete_user", name)
        asyncio.run(_delete_topology(document))


async def _delete_topology(document: dict[str, list[dict[str, object]]]) -> None:
    connection = await servers.connect_amqp()
    async with connection, connection.channel() as channel:
        for queue in document["queues"]:
            await channel.queue_delete(str(queue["name"]))
        for exchange in document["exchanges"]:
            await channel.exchange_delete(str(exchange["name"]))


@asynccontextmanager
async def channel_of(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def publish(
    url: str, exchange: str, key: str, *, user_id: str | None = None, mandatory: bool = False
) -> None:
    async with channel_of(url) as channel:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(
            aio_pika.Message(b"{}", user_id=user_id), key, mandatory=mandatory, timeout=5
        )


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    pass


async def refused(action: Callable[[], object], error: type[Exception]) -> str:
    with pytest.raises(error) as caught:
        await action()  # type: ignore[misc]
    return str(caught.value)


async def test_a_participant_consumes_its_own_queue_only(imported: Imported) -> None:
    ns = imported.ns
    url = imported.url(f"{ns}.inventory")
    # What `saga participant` does at start: declare the exchanges, its queue, bind.
    transport = await RabbitTransport.connect(url, namespace=ns, delivery_limit=3)
    async with transport:
        got: asyncio.Queue[str] = asyncio.Queue()

        async def handle(delivery: object) -> None:
            await delivery.ack()  # type: ignore[attr-defined]
            await got.put(delivery.message_id)  # type: ignore[attr-defined]

        await transport.subscribe("inventory.commands", "commands", "inventory.*", handle)
        admin = await servers.connect_amqp()
        async with admin, admin.channel() as channel:
            commands = await channel.get_exchange(f"{ns}.commands", ensure=False)
            await commands.publish(aio_pika.Message(b"{}", message_id="m-1"), "inventory.Reserve")
        assert await asyncio.wait_for(got.get(), 10) == "m-1"

    async def consume_other() -> None:
        async with channel_of(url) as channel:
            queue = await channel.get_queue(f"{ns}.payments.commands", ensure=False)
            await queue.consume(_ignore)

    reason = await refused(consume_other, aiormq.exceptions.ChannelAccessRefused)
    assert f"{ns}.payments.commands" in reason


async def test_a_participant_replies_only_as_itself(imported: Imported) -> None:
    ns, user = imported.ns, f"{imported.ns}.inventory"
    url = imported.url(user)
    events = f"{ns}.events"

    await publish(url, events, "reply.inventory.order.TaskCompleted", user_id=user, mandatory=True)
    # Parking a message it cannot handle, as the transport does.
    await publish(url, f"{ns}.dead", "inventory.commands", mandatory=True)

    for key in ("reply.payments.order.TaskCompleted", "control.cancel", "order.TaskCompleted"):
        reason = await refused(
            lambda key=key: publish(url, events, key), aiormq.exceptions.ChannelAccessRefused
        )
        assert "topic" in reason and key in reason
    reason = await refused(
        lambda: publish(url, f"{ns}.dead", "payments.commands"),
        aiormq.exceptions.ChannelAccessRefused,
    )
    assert "payments.commands" in reason
    reason = await refused(
        lambda: publish(url, f"{ns}.commands", "payments.Charge"),
        aiormq.exceptions.ChannelAccessRefused,
    )
    assert f"{ns}.commands" in reason
    # The broker vouches for the sender: a user_id not the connection's is refused.
    reason = await refused(
        lambda: publish(
            url, events, "reply.inventory.order.TaskCompleted", user_id=f"{ns}.payments"
        ),
        aiormq.exceptions.ChannelPreconditionFailed,
    )
    assert "user_id" in reason


async def test_the_operator_sends_control_messages_and_lists_dead_letters(
    imported: Imported,
) -> None:
    ns = imported.ns
    url = imported.url(f"{ns}.operator")
    transport = await RabbitTransport.connect(url, namespace=ns, delivery_limit=3)
    await transport.close()  # connecting declares the exchanges: allowed

    await publish(url, f"{ns}.events", "control.cancel", mandatory=True)
    reason = await refused(
        lambda: publish(url, f"{ns}.events", "reply.inventory.order.TaskCompleted"),
        aiormq.exceptions.ChannelAccessRefused,
    )
    assert "topic" in reason
    async with channel_of(url) as channel:
        dead = await channel.declare_queue(f"{ns}.inventory.commands.dead", passive=True)
        await dead.get(fail=False)  # allowed: listing takes without acknowledging

    async def consume_commands() -> None:
        async with channel_of(url) as channel:
            queue = await channel.get_queue(f"{ns}.inventory.commands", ensure=False)
            await queue.get(fail=False)

    await refused(consume_commands, aiormq.exceptions.ChannelAccessRefused)


async def test_the_coordinator_consumes_events_and_sends_commands(imported: Imported) -> None:
    ns = imported.ns
    url = imported.url(f"{ns}.coordinator")
    transport = await RabbitTransport.connect(url, namespace=ns, delivery_limit=3)
    async with transport:
        got: asyncio.Queue[str] = asyncio.Queue()

        async def handle(delivery: object) -> None:
            await delivery.ack()  # type: ignore[attr-defined]
            await got.put(delivery.message_id)  # type: ignore[attr-defined]

        await transport.subscribe("coordinator.events", "events", "#", handle)
        await transport.publish("commands", "inventory.Reserve", b"{}", message_id="c-1")
        await transport.publish("events", "control.cancel", b"{}", message_id="e-1")
        # The other tests' replies and control messages are in the queue before it.
        async with asyncio.timeout(10):
            while await got.get() != "e-1":
                pass


def test_a_service_named_like_a_role_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be named operator"):
        user_definitions("saga", ["operator"])
