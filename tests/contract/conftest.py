"""Fixtures of the contract suites: each port against memory and a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest
from servers import connect_rabbit, namespace

from coordinator.adapters.memory import MemoryTransport
from coordinator.adapters.memory import UnroutableError as MemoryUnroutableError
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.rabbitmq import UnroutableError as RabbitUnroutableError
from coordinator.ports import Exchange, Handler, Subscription, Transport

# -- transport ----------------------------------------------------------------------

CONTRACT_DELIVERY_LIMIT = 3

DeadLetters = list[tuple[str, str, bytes]]


class TransportUnderTest:
    """A transport of the contract suite, plus what the adapters expose differently.

    ``publish`` and ``subscribe`` go to the transport itself; ``dead(queue)``
    lists ``(reason, detail, body)`` of the dead letters of ``queue``, oldest
    first; ``peer()`` is another client of the same broker and namespace (the
    same transport for memory, a second connection for RabbitMQ).
    """

    def __init__(
        self,
        kind: str,
        transport: Transport,
        *,
        unroutable: type[Exception],
        dead: Callable[[str], Awaitable[DeadLetters]],
        peer: Callable[[], Awaitable[Transport]],
    ) -> None:
        self.kind = kind
        self.transport = transport
        self.unroutable = unroutable
        self.delivery_limit = CONTRACT_DELIVERY_LIMIT
        self.dead = dead
        self.peer = peer

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
    ) -> None:
        await self.transport.publish(
            exchange, routing_key, body, message_id=message_id, headers=headers, mandatory=mandatory
        )

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        return await self.transport.subscribe(queue, exchange, pattern, handler, prefetch=prefetch)


@pytest.fixture(params=["memory", "rabbitmq"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[TransportUnderTest]:
    if request.param == "memory":
        memory = MemoryTransport(delivery_limit=CONTRACT_DELIVERY_LIMIT)

        async def memory_dead(queue: str) -> DeadLetters:
            return [(d.reason, d.detail, d.body) for d in memory.dead_letters if d.queue == queue]

        async def memory_peer() -> Transport:
            return memory

        yield TransportUnderTest(
            "memory",
            memory,
            unroutable=MemoryUnroutableError,
            dead=memory_dead,
            peer=memory_peer,
        )
        await memory.close()
        return

    ns = namespace()
    rabbit = await connect_rabbit(ns, delivery_limit=CONTRACT_DELIVERY_LIMIT)
    peers: list[RabbitTransport] = []

    async def rabbit_dead(queue: str) -> DeadLetters:
        return [(d.reason, d.detail, d.body) for d in await rabbit.dead_letters(queue)]

    async def rabbit_peer() -> Transport:
        peer = await connect_rabbit(ns, delivery_limit=CONTRACT_DELIVERY_LIMIT)
        peers.append(peer)
        return peer

    try:
        yield TransportUnderTest(
            "rabbitmq",
            rabbit,
            unroutable=RabbitUnroutableError,
            dead=rabbit_dead,
            peer=rabbit_peer,
        )
    finally:
        queues: set[str] = set()
        for peer in peers:
            queues |= peer.queues
            await peer.close()
        await rabbit.delete_namespace(queues)
        await rabbit.close()
