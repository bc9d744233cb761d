"""An in-process message broker with RabbitMQ's semantics, for tests and the demo.

What it keeps from RabbitMQ, because the runtime and the participants rely on it:
three topic exchanges (``*`` matches one word, ``#`` zero or more); queues
declared by subscribing, possibly bound several times, keeping their messages
until a consumer comes; ``mandatory`` publishing (`UnroutableError` instead of
a silent drop); competing consumers, round robin, each bounded by its
``prefetch``; and redelivery with ``delivery_count + 1`` of a message whose
handler raised, requeued it or returned without settling it, up to
``delivery_limit`` deliveries, then the dead letters with reason
``delivery_limit`` (a quorum queue's ``x-delivery-limit``); and the validated
``user_id``: a connection (`MemoryTransport.as_user`) may publish only its own
user name, else `WrongUserError`, as RabbitMQ closes the channel.

Every state change runs without awaiting in between, so the bookkeeping behind
`MemoryTransport.drain` is exact: no polling, no sleeps. The queues, their
consumers and deliveries are in ``_queues``; topic matching in ``_topic``;
the ``DeadLetters`` port over `MemoryTransport.dead_letters` in ``_dead_letters``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import final

from contracts import routes
from coordinator._errors import UnroutableError, WrongUserError
from coordinator.adapters.memory._queues import Consumer, Message, Published, Queue
from coordinator.adapters.memory._topic import topic_matches
from coordinator.ports import DeadLetter, Exchange, Handler, Subscription

__all__ = ["MemoryConnection", "MemoryTransport", "Published"]

_log = logging.getLogger("coordinator.adapters.memory")


@final
class MemoryTransport:
    """Implements the ``Transport`` port in one process, on the running event loop.

    Example:
        transport = MemoryTransport()
        await transport.subscribe("inventory.commands", "commands", "inventory.*", handle)
        await transport.publish("commands", "inventory.Reserve", body, message_id="m-1")
        await transport.drain()  # every consumed queue empty, no handler running

    Attributes:
        dead_letters: Messages dead-lettered so far, oldest first, for tests to
            assert on; `MemoryDeadLetters` is the ``DeadLetters`` port over it.
        published: Messages accepted so far, oldest first.
        handler_errors: Exceptions handlers raised (each also caused a redelivery).
    """

    def __init__(self, *, delivery_limit: int = 5, user: str = "guest") -> None:
        """Create a transport with no queues.

        Args:
            delivery_limit: Deliveries of one message before it is dead-lettered
                with reason ``delivery_limit`` instead of delivered again.
            user: The user this connection is logged in as; `as_user` opens
                others on the same broker.

        Raises:
            ValueError: If ``delivery_limit`` is below 1.
        """
        if delivery_limit < 1:
            raise ValueError(f"delivery_limit must be at least 1, got {delivery_limit}")
        self.delivery_limit = delivery_limit
        self.user = user
        self.dead_letters: list[DeadLetter] = []
        self.published: list[Published] = []
        self.handler_errors: list[Exception] = []
        self._queues: dict[str, Queue] = {}
        self._publish_faults: deque[Exception] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._in_flight = 0

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
        """Route a message to every queue bound to match it (once per queue).

        Raises:
            UnroutableError: If no queue is bound to receive it and ``mandatory``.
            WrongUserError: If ``user_id`` is set and not this connection's `user`.
            ValueError: If ``exchange`` is not one of the three exchanges.
            RuntimeError: If the transport is closed.
        """
        await self._publish_as(
            self.user, exchange, routing_key, body, message_id, headers, mandatory, user_id
        )

    def as_user(self, user: str) -> MemoryConnection:
        """Another connection to this broker, logged in as ``user``."""
        return MemoryConnection(self, user)

    async def _publish_as(
        self,
        user: str,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, str] | None,
        mandatory: bool,
        user_id: str | None,
    ) -> None:
        self._check_open()
        routes.check_exchange(exchange)
        if user_id is not None and user_id != user:
            raise WrongUserError(user_id, user)
        if self._publish_faults:
            raise self._publish_faults.popleft()
        targets = [
            queue
            for queue in self._queues.values()
            if any(ex == exchange and topic_matches(p, routing_key) for ex, p in queue.bindings)
        ]
        if not targets:
            if not mandatory:
                return
            raise UnroutableError(exchange, routing_key)
        published = Published(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            message_id=message_id,
            headers=MappingProxyType(dict(headers or {})),
            user_id=user_id,
        )
        self.published.append(published)
        for queue in targets:
            queue.ready.append(Message(published))
            self._dispatch(queue)

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        """Declare ``queue``, bind it to ``exchange`` by ``pattern`` and consume it.

        Subscribing again to a queue adds a competing consumer (and the
        binding, if it is new).

        Args:
            queue: The queue's name.
            exchange: The exchange to bind to.
            pattern: The topic pattern, e.g. ``inventory.*``.
            handler: Called with each delivery; it must settle it.
            prefetch: Deliveries this subscription handles at once.

        Returns:
            The subscription; ``await subscription.stop()`` ends it.

        Raises:
            ValueError: If ``exchange`` is unknown or ``prefetch`` below 1.
            RuntimeError: If the transport is closed.
        """
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        declared = self._declare(queue, exchange, pattern)
        consumer = Consumer(self, declared, handler, prefetch)
        declared.consumers.append(consumer)
        self._dispatch(declared)
        return consumer

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        """Declare ``queue`` bound to ``exchange`` by ``pattern`` without consuming it.

        Its messages wait until a consumer subscribes; `ready` shows them.

        Raises:
            ValueError: If ``exchange`` is unknown.
        """
        self._declare(queue, exchange, pattern)

    def ready(self, queue: str) -> list[bytes]:
        """The bodies waiting in ``queue``, not yet delivered, oldest first."""
        declared = self._queues.get(queue)
        return [m.published.body for m in declared.ready] if declared else []

    def fail_next_publish(self, error: Exception | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` publishes raise ``error`` (a ``ConnectionError`` by default)."""
        for _ in range(times):
            self._publish_faults.append(error or ConnectionError("injected publish failure"))

    @property
    def in_flight(self) -> int:
        """Handlers running now, including those of stopped subscriptions."""
        return self._in_flight

    @property
    def backlog(self) -> int:
        """Messages waiting in queues that have a consumer (parked queues excluded)."""
        return sum(len(q.ready) for q in self._queues.values() if q.consumers)

    @property
    def idle(self) -> bool:
        """True when no handler is running and no consumed queue holds a message."""
        return self._is_idle()

    async def drain(self) -> None:
        """Wait until no handler is running and no consumed queue holds a message.

        A queue with no consumer keeps its messages and does not hold this up.
        Handlers that publish keep the transport busy, so after ``drain`` the
        whole cascade has been handled.
        """
        while not self._is_idle():
            # Cleared first so a stale set cannot spin; every change that can
            # make the transport idle goes through _update_idle, which sets it.
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        """Stop every subscription, waiting for the handlers in flight; then refuse use."""
        self._closed = True
        consumers = [c for q in self._queues.values() for c in q.consumers]
        await asyncio.gather(*(c.stop() for c in consumers))

    # -- called by deliveries and consumers ----------------------------------------

    def _declare(self, queue: str, exchange: Exchange, pattern: str) -> Queue:
        routes.check_exchange(exchange)
        declared = self._queues.get(queue)
        if declared is None:
            declared = self._queues[queue] = Queue(queue)
        declared.bindings.add((exchange, pattern))
        return declared

    def _dispatch(self, queue: Queue) -> None:
        while queue.ready:
            consumer = queue.next_consumer()
            if consumer is None:
                break
            consumer.start(queue.ready.popleft())
        self._update_idle()

    def _redeliver(
        self, queue: Queue, message: Message, why: str, *, dispatch: bool = True
    ) -> None:
        if message.delivery_count >= self.delivery_limit:
            detail = f"{why}; delivered {message.delivery_count} times"
            self._dead_letter(queue, message, "delivery_limit", detail)
        elif dispatch:
            queue.ready.append(message)
            self._dispatch(queue)
        else:
            queue.ready.appendleft(message)

    def _dead_letter(self, queue: Queue, message: Message, reason: str, detail: str) -> None:
        published = message.published
        headers = {
            **{k: v for k, v in published.headers.items() if k != routes.ORIGINAL_USER_ID_HEADER},
            **_sender(published.user_id),
            routes.DEAD_LETTER_REASON_HEADER: reason,
            routes.DEAD_LETTER_DETAIL_HEADER: detail,
            routes.DEAD_LETTER_AT_HEADER: datetime.now(UTC).isoformat(),
        }
        self.dead_letters.append(
            DeadLetter(
                queue=queue.name,
                message_id=published.message_id,
                body=published.body,
                headers=headers,
                reason=reason,
                detail=detail,
                exchange=published.exchange,
                routing_key=published.routing_key,
                delivery_count=message.delivery_count,
            )
        )
        _log.warning("dead-lettered %r from %r: %s", published.message_id, queue.name, reason)

    def _put_back(self, queue: str, published: Published) -> None:
        # A dead letter moved back: a new message at the end of its queue.
        declared = self._queues[queue]
        declared.ready.append(Message(published))
        self._dispatch(declared)

    def _is_idle(self) -> bool:
        # Counted, not read off the consumers: a stopped subscription's
        # handlers run on until they finish.
        if self._in_flight:
            return False
        return not any(q.ready and q.consumers for q in self._queues.values())

    def _update_idle(self) -> None:
        if self._is_idle():
            self._idle.set()
        else:
            self._idle.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")


def _sender(user_id: str | None) -> dict[str, str]:
    # The property is the parker's to set, not the sender's: kept as a header instead.
    return {routes.ORIGINAL_USER_ID_HEADER: user_id} if user_id else {}


@final
class MemoryConnection:
    """A connection to a `MemoryTransport` logged in as another user: what it
    publishes goes to the same broker, and its ``user_id`` is checked against ``user``."""

    def __init__(self, broker: MemoryTransport, user: str) -> None:
        self.broker = broker
        self.user = user

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
        await self.broker._publish_as(
            self.user, exchange, routing_key, body, message_id, headers, mandatory, user_id
        )

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        await self.broker.declare(queue, exchange, pattern)

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        return await self.broker.subscribe(queue, exchange, pattern, handler, prefetch=prefetch)
