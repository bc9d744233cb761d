"""The ``Transport`` port on RabbitMQ, with aio-pika.

Semantics are those of ``coordinator.adapters.memory.MemoryTransport`` (the
same contract suite runs against both): topic exchanges, quorum queues
declared by subscribing, ``mandatory`` publishing with publisher confirms,
competing consumers bounded by their prefetch, redelivery with a growing
``delivery_count`` up to ``delivery_limit`` deliveries, then the dead letters.

Channels: one for publishing (confirms on, ``basic.return`` raises), one per
subscription (its own prefetch, closed when it stops), and short-lived ones for
declarations and administration, so that a channel error there (``404``,
``406``) never closes a channel in use. The connection is robust: aio-pika
reopens it and its channels, redeclares and consumes again after a broker
restart. A publish in flight during the outage fails (`PublishFailedError`)
and is the caller's to retry; a delivery in flight is redelivered.

Dead letters are read and moved back by ``_admin.RabbitDeadLetters`` (the
``DeadLetters`` port), on this transport's connection and publisher.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Self, final

import aio_pika
import aiormq
import yarl
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from pamqp.common import FieldTable

from contracts import ContractError, routes
from coordinator.adapters.rabbitmq._consumer import Consumer
from coordinator.adapters.rabbitmq._errors import CHANNEL_ERRORS, TopologyMismatchError
from coordinator.adapters.rabbitmq._publisher import Publisher
from coordinator.adapters.rabbitmq._topology import (
    DEAD_EXCHANGE,
    EXCHANGES,
    dead_queue_arguments,
    dead_queue_name,
    exchange_name,
    queue_arguments,
    queue_name,
)
from coordinator.ports import Exchange, Handler, Subscription

__all__ = ["RabbitTransport", "user_of"]

_log = logging.getLogger("coordinator.adapters.rabbitmq")


@final
class RabbitTransport:
    """Implements the ``Transport`` port on a RabbitMQ broker.

    Example:
        async with await RabbitTransport.connect("amqp://guest:guest@localhost/") as transport:
            await transport.subscribe("inventory.commands", "commands", "inventory.*", handle)
            await transport.publish("commands", "inventory.Reserve", body, message_id="m-1")

    Create it with `connect`.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publisher: Publisher,
        *,
        namespace: str,
        delivery_limit: int,
        max_message_size: int | None,
        publish_timeout: timedelta,
        user: str = "guest",
    ) -> None:
        """Use `connect`, which declares the exchanges first."""
        self.namespace = namespace
        self._user = user
        self.delivery_limit = delivery_limit
        self.max_message_size = max_message_size
        self.publish_timeout = publish_timeout
        self._connection = connection
        self._publisher = publisher
        self._consumers: list[Consumer] = []
        self._queues: set[str] = set()
        self._closed = False

    @property
    def heartbeat(self) -> timedelta | None:
        """The heartbeat the broker agreed to; None while disconnected."""
        underlying = self._connection.transport
        if underlying is None:
            return None
        connection = underlying.connection
        assert isinstance(connection, aiormq.Connection)
        return timedelta(seconds=connection.heartbeat_timeout)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        namespace: str = "saga",
        delivery_limit: int = 5,
        max_message_size: int | None = None,
        publish_timeout: timedelta = timedelta(seconds=10),
        connect_timeout: timedelta = timedelta(seconds=10),
        reconnect_interval: timedelta = timedelta(seconds=1),
        heartbeat: timedelta = timedelta(seconds=10),
        ssl_context: ssl.SSLContext | None = None,
    ) -> RabbitTransport:
        """Connect (robustly) and declare the exchanges of ``namespace``.

        Args:
            url: The broker, e.g. ``amqp://guest:guest@localhost:5672/``.
            namespace: Prefix of every exchange and queue name; deployments
                sharing a broker use different ones.
            delivery_limit: Deliveries of one message before it is
                dead-lettered with reason ``delivery_limit``.
            max_message_size: Bodies over this many bytes are refused when
                published and dead-lettered (reason ``too_large``) when consumed.
            publish_timeout: How long a publish waits for the broker's
                confirm; a lost connection would otherwise hang it.
            connect_timeout: How long the first connection may take.
            reconnect_interval: Pause between attempts to reconnect after the
                connection was lost (aio-pika's default is 5 s, which a broker
                restart turns into seconds of stalled sagas).
            heartbeat: The AMQP heartbeat to negotiate. The broker closes a
                connection it heard nothing on for two to three heartbeats and
                only then requeues its unacknowledged deliveries, so this bounds
                how long a frozen process keeps its prefetch (aio-pika's default
                of 60 s kept it for two minutes or more).
            ssl_context: The TLS context of an ``amqps://`` URL, used as given
                (aiormq would otherwise build one from the URL's ``cafile``,
                ``certfile`` and ``no_verify_ssl`` options).

        Raises:
            ValueError: If a limit is out of range or the namespace empty.
            ConnectionError: If the broker cannot be reached (aio-pika's
                ``AMQPConnectionError`` is one).
            TopologyMismatchError: If an exchange exists with other settings.
        """
        if not namespace:
            raise ValueError("namespace must not be empty")
        queue_arguments(namespace, "_", delivery_limit=delivery_limit)  # validates the limit
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, got {max_message_size}")
        connection = await aio_pika.connect_robust(
            url,
            timeout=connect_timeout.total_seconds(),
            reconnect_interval=reconnect_interval.total_seconds(),
            heartbeat=max(1, round(heartbeat.total_seconds())),
            client_properties={"connection_name": f"saga-coordinator {namespace}"},
            ssl_context=ssl_context,
        )
        try:
            publisher = await Publisher.open(connection, namespace, publish_timeout)
        except BaseException:
            await connection.close()
            raise
        return cls(
            connection,
            publisher,
            namespace=namespace,
            delivery_limit=delivery_limit,
            max_message_size=max_message_size,
            publish_timeout=publish_timeout,
            user=user_of(url),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the port ---------------------------------------------------------------

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
        user_id: str | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm.

        The broker checks ``user_id`` against the user this connection logged in as.

        Raises:
            UnroutableError: If no queue is bound to receive it and ``mandatory``.
            PublishFailedError: If the broker nacked it, did not confirm it
                within ``publish_timeout``, or the connection was lost.
            ContractError: If ``body`` is over ``max_message_size`` (reason ``too_large``).
            WrongUserError: If ``user_id`` is not the connection's user.
            ValueError: If ``exchange`` is not one of the three exchanges.
            RuntimeError: If the transport is closed.
        """
        self._check_open()
        routes.check_exchange(exchange)
        if self.max_message_size is not None and len(body) > self.max_message_size:
            raise ContractError(
                f"message {message_id!r} is {len(body)} bytes, over the limit of "
                f"{self.max_message_size}",
                reason="too_large",
            )
        await self._publisher.publish(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers=headers or {},
            mandatory=mandatory,
            user_id=user_id,
            user=self.user,
        )

    @property
    def user(self) -> str:
        """The user name in the URL (aio-pika's ``guest`` when it has none); ``""`` with a
        certificate login (``auth=external``), where the broker reads it off the certificate."""
        return self._user

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        """Declare ``queue`` (quorum) bound to ``exchange`` by ``pattern`` and consume it.

        Subscribing again to a queue, here or in another process, adds a
        competing consumer (and the binding, if it is new).

        Raises:
            TopologyMismatchError: If the queue exists with other arguments.
            ValueError: If ``exchange`` is unknown or ``prefetch`` below 1.
            RuntimeError: If the transport is closed.
        """
        self._check_open()
        routes.check_exchange(exchange)
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=prefetch)
            declared = await self._declare_on(channel, queue, exchange, pattern)
            consumer = Consumer(
                channel=channel,
                queue=declared,
                name=queue,
                handler=handler,
                delivery_limit=self.delivery_limit,
                max_message_size=self.max_message_size,
                namespace=self.namespace,
                park=self._park,
            )
            await consumer.start()
        except BaseException:
            await _close_quietly(channel)
            raise
        self._consumers.append(consumer)
        return consumer

    # -- beyond the port ------------------------------------------------------------

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        """Declare ``queue`` bound to ``exchange`` by ``pattern`` without consuming it.

        Raises:
            TopologyMismatchError: If the queue exists with other arguments.
            ValueError: If ``exchange`` is unknown.
        """
        self._check_open()
        routes.check_exchange(exchange)
        async with self._channel() as channel:
            await self._declare_on(channel, queue, exchange, pattern)

    def problem(self) -> str:
        """Why no message can be published or consumed now, or ``""``: for ``/readyz``.

        While the connection is lost aio-pika reconnects, then reopens the channels.
        """
        if self._closed:
            return "the transport is closed"
        if self._connection.is_closed or not self._connection.connected.is_set():
            return "not connected (reconnecting)"
        if not self._publisher.channel_open:
            return "the publishing channel is closed"
        for consumer in self._consumers:
            if not consumer.channel_open:
                return f"the channel consuming {consumer.name} is closed"
        return ""

    @property
    def queues(self) -> frozenset[str]:
        """The queues declared through this transport (by `subscribe` or `declare`)."""
        return frozenset(self._queues)

    @property
    def in_flight(self) -> int:
        """Handlers running now, including those of subscriptions being stopped."""
        return sum(consumer.in_flight for consumer in self._consumers)

    async def purge_namespace(self, queues: Iterable[str] = ()) -> None:
        """Empty the queues declared here (and ``queues``) and their dead-letter queues."""
        self._check_open()
        async with self._channel() as channel:
            for name in self._broker_queues(queues):
                declared = await channel.get_queue(name, ensure=False)
                await declared.purge()

    async def delete_namespace(self, queues: Iterable[str] = ()) -> None:
        """Stop consuming; delete the queues declared here (and ``queues``) and the exchanges.

        For tests and teardown: the messages in them are gone.
        """
        self._check_open()
        await self._stop_consumers()
        async with self._channel() as channel:
            for name in self._broker_queues(queues):
                # if_unused=False explicitly: the default makes RabbitMQ close
                # the channel when deleting a quorum queue.
                await channel.queue_delete(name, if_unused=False, if_empty=False)
            for exchange in (*EXCHANGES, DEAD_EXCHANGE):
                await channel.exchange_delete(exchange_name(self.namespace, exchange))
        self._queues.clear()

    async def close(self) -> None:
        """Stop every subscription, waiting for the handlers in flight; then disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stop_consumers()
        finally:
            await self._connection.close()

    # -- internals --------------------------------------------------------------------

    async def _park(
        self, queue: str, body: bytes, message_id: str, headers: Mapping[str, str]
    ) -> None:
        original = headers.get(routes.ORIGINAL_EXCHANGE_HEADER, "")
        prefix = routes.address(self.namespace, "")
        headers = {**headers, routes.ORIGINAL_EXCHANGE_HEADER: original.removeprefix(prefix)}
        await self._publisher.publish(
            DEAD_EXCHANGE, queue, body, message_id=message_id, headers=headers, mandatory=True
        )

    async def _declare_on(
        self, channel: AbstractChannel, queue: str, exchange: Exchange, pattern: str
    ) -> aio_pika.abc.AbstractQueue:
        ns = self.namespace
        try:
            declared = await channel.declare_queue(
                queue_name(ns, queue),
                durable=True,
                arguments=_table(queue_arguments(ns, queue, delivery_limit=self.delivery_limit)),
            )
            dead = await channel.declare_queue(
                dead_queue_name(ns, queue), durable=True, arguments=_table(dead_queue_arguments())
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TopologyMismatchError(
                f"queue {queue!r} of namespace {ns!r} exists with other arguments "
                f"(delivery_limit {self.delivery_limit} here): {exc}"
            ) from exc
        await declared.bind(exchange_name(ns, exchange), pattern)
        await dead.bind(exchange_name(ns, DEAD_EXCHANGE), queue)
        self._queues.add(queue)
        return declared

    @asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        channel = await self._connection.channel()
        try:
            yield channel
        finally:
            await _close_quietly(channel)

    def _broker_queues(self, queues: Iterable[str]) -> list[str]:
        names = sorted(self._queues | set(queues))
        ns = self.namespace
        return [queue_name(ns, q) for q in names] + [dead_queue_name(ns, q) for q in names]

    async def _stop_consumers(self) -> None:
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(consumer.stop() for consumer in consumers))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")


def user_of(url: str) -> str:
    """The user an AMQP URL logs in as (aio-pika's ``guest`` when it names none); ``""``
    with a certificate login (``auth=external``), where the broker reads it off the
    certificate."""
    parsed = yarl.URL(url)
    if parsed.query.get("auth", "").lower() == "external":
        return ""
    return parsed.user or "guest"


def _table(arguments: Mapping[str, str | int]) -> FieldTable:
    return dict(arguments)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        await channel.close()
    except CHANNEL_ERRORS as exc:
        _log.debug("closing a channel failed: %r", exc)
