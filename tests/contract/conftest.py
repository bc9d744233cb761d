"""Fixtures of the contract suites: each port against memory and a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import final

import pytest
from broker_users import broker_user
from servers import connect_rabbit, namespace

from coordinator.adapters.memory import MemoryDeadLetters, MemoryTransport
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.ports import DeadLetters, Transport

# -- transport and dead letters -------------------------------------------------------

CONTRACT_DELIVERY_LIMIT = 3

Peer = Callable[[], Awaitable[Transport]]
"""Another client of the same broker and namespace, for competing consumers."""


@final
class MemoryBroker:
    """The in-memory broker under the contract: one transport is every client."""

    def __init__(self) -> None:
        self.transport = MemoryTransport(delivery_limit=CONTRACT_DELIVERY_LIMIT)
        self.dead_letters = MemoryDeadLetters(self.transport)

    async def peer(self) -> Transport:
        return self.transport

    async def as_user(self, user: str) -> Transport:
        return self.transport.as_user(user)

    async def close(self) -> None:
        await self.transport.close()


@final
class RabbitBroker:
    """RabbitMQ under the contract, in a namespace of its own; a peer is a second connection."""

    def __init__(self, transport: RabbitTransport) -> None:
        self.transport = transport
        self.dead_letters = RabbitDeadLetters(transport)
        self._peers: list[RabbitTransport] = []
        self._users = AsyncExitStack()

    @classmethod
    async def connect(cls) -> RabbitBroker:
        return cls(await connect_rabbit(namespace(), delivery_limit=CONTRACT_DELIVERY_LIMIT))

    async def peer(self) -> Transport:
        peer = await connect_rabbit(
            self.transport.namespace, delivery_limit=CONTRACT_DELIVERY_LIMIT
        )
        self._peers.append(peer)
        return peer

    async def as_user(self, user: str) -> Transport:
        """A peer logged in as a throwaway user ``{namespace}.{user}``."""
        url = await self._users.enter_async_context(
            broker_user(f"{self.transport.namespace}.{user}")
        )
        peer = await RabbitTransport.connect(
            url,
            namespace=self.transport.namespace,
            delivery_limit=CONTRACT_DELIVERY_LIMIT,
            connect_timeout=timedelta(seconds=3),
        )
        self._peers.append(peer)
        return peer

    async def close(self) -> None:
        queues: set[str] = set()
        for peer in self._peers:
            queues |= peer.queues
            await peer.close()
        await self.transport.delete_namespace(queues)
        await self.transport.close()
        await self._users.aclose()


@pytest.fixture(params=["memory", "rabbitmq"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[MemoryBroker | RabbitBroker]:
    opened = MemoryBroker() if request.param == "memory" else await RabbitBroker.connect()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def transport(broker: MemoryBroker | RabbitBroker) -> Transport:
    return broker.transport


@pytest.fixture
def dead_letters(broker: MemoryBroker | RabbitBroker) -> DeadLetters:
    return broker.dead_letters


@pytest.fixture
def peer(broker: MemoryBroker | RabbitBroker) -> Peer:
    return broker.peer


@pytest.fixture
def as_user(broker: MemoryBroker | RabbitBroker) -> Callable[[str], Awaitable[Transport]]:
    """Another client of the same broker logged in as another user."""
    return broker.as_user


@pytest.fixture
def delivery_limit() -> int:
    return CONTRACT_DELIVERY_LIMIT
