"""An in-process message broker with RabbitMQ's semantics, for tests and the demo.

What it keeps from RabbitMQ, because the runtime and the participants rely on it:
three topic exchanges (``*`` matches one word, ``#`` zero or more); queues
declared by subscribing, possibly bound several times, keeping their messages
until a consumer comes; ``mandatory`` publishing (`UnroutableError` instead of
a silent drop); competing consumers, round robin, each bounded by its
``prefetch``; and redelivery with ``delivery_count + 1`` of a message whose
handler raised, requeued it or returned without settling it, up to
``delivery_limit`` deliveries, then the dead letters with reason
``delivery_limit`` (a quorum queue's ``x-delivery-limit``).

Every state change runs without awaiting in between, so the bookkeeping behind
`MemoryTransport.drain` is exact: no polling, no sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final, final, get_args

from contracts import routes
from coordinator._errors import UnroutableError
from coordinator.ports import Exchange, Handler, Subscription

__all__ = ["DeadLetter", "MemoryTransport", "Published", "UnroutableError", "topic_matches"]

_log = logging.getLogger(__name__)

EXCHANGES: Final[tuple[Exchange, ...]] = get_args(Exchange)


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """One message the transport accepted."""

    exchange: Exchange
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message parked for an operator, as a dead-letter queue would hold it.

    Attributes:
        queue: The queue it was dead-lettered from.
        body: The message body, unchanged.
        headers: The original headers plus ``x-death-reason`` and ``x-death-detail``.
        reason: A short machine code, e.g. ``malformed_json`` or ``delivery_limit``.
        detail: What was wrong, for a human.
        message: The message as it was published.
        delivery_count: How many times it had been delivered.
    """

    queue: str
    body: bytes
    headers: Mapping[str, str]
    reason: str
    detail: str
    message: Published
    delivery_count: int


@lru_cache(maxsize=1024)
def _words(text: str) -> tuple[str, ...]:
    # RabbitMQ reads an empty key as no words at all, not as one empty word.
    return tuple(text.split(".")) if text else ()


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding pattern matches a routing key, as AMQP defines it.

    Args:
        pattern: The binding pattern; words are separated by ``.``, ``*`` stands
            for exactly one word and ``#`` for zero or more.
        routing_key: The routing key of a published message.

    Returns:
        True if the message goes to queues bound by ``pattern``.
    """
    pat, key = _words(pattern), _words(routing_key)
    # reachable[j]: the pattern words consumed so far can match key[:j].
    reachable = [True] + [False] * len(key)
    for word in pat:
        if word == "#":
            for j in range(1, len(key) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(key), 0, -1):
                reachable[j] = reachable[j - 1] and word in ("*", key[j - 1])
            reachable[0] = False
    return reachable[len(key)]


@dataclass(slots=True, eq=False)
class _Message:
    published: Published
    delivery_count: int = 0


@dataclass(slots=True, eq=False)
class _Queue:
    name: str
    bindings: set[tuple[Exchange, str]] = field(default_factory=set)
    ready: deque[_Message] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    turn: int = 0

    def next_consumer(self) -> _Consumer | None:
        """The next consumer with a free prefetch slot, round robin."""
        for offset in range(len(self.consumers)):
            index = (self.turn + offset) % len(self.consumers)
            if self.consumers[index].has_capacity():
                self.turn = index + 1
                return self.consumers[index]
        return None


@final
@dataclass(slots=True, eq=False, kw_only=True)
class _Delivery:
    """Implements the ``Delivery`` port: one delivery of one message."""

    body: bytes
    headers: Mapping[str, str]
    delivery_count: int
    message_id: str
    settled: bool = False
    _consumer: _Consumer
    _message: _Message

    async def ack(self) -> None:
        self.settle()

    async def requeue(self) -> None:
        self.settle()
        self._consumer.transport._redeliver(self._consumer.queue, self._message, "requeued")

    async def dead_letter(self, reason: str, detail: str) -> None:
        self.settle()
        self._consumer.transport._dead_letter(self._consumer.queue, self._message, reason, detail)

    def settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of {self.message_id!r} is already settled")
        self.settled = True


@final
class _Consumer:
    """One subscription: a handler taking deliveries from a queue."""

    def __init__(
        self, transport: MemoryTransport, queue: _Queue, handler: Handler, prefetch: int
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.active = True
        self.tasks: set[asyncio.Task[None]] = set()

    def has_capacity(self) -> bool:
        return self.active and len(self.tasks) < self.prefetch

    def start(self, message: _Message) -> None:
        message.delivery_count += 1
        published = message.published
        delivery = _Delivery(
            body=published.body,
            headers=published.headers,
            delivery_count=message.delivery_count,
            message_id=published.message_id,
            _consumer=self,
            _message=message,
        )
        self.transport._in_flight += 1
        self.tasks.add(asyncio.get_running_loop().create_task(self._run(delivery)))

    async def _run(self, delivery: _Delivery) -> None:
        cancelled = False
        try:
            await self.handler(delivery)
        except asyncio.CancelledError:
            # Usually the loop shutting down: the message goes back, but no new
            # handler starts from here, since nothing would await it. The next
            # publish, subscribe or finishing handler dispatches it.
            cancelled = True
            self._recover(delivery, "handler cancelled", dispatch=False)
            raise
        except Exception as exc:
            self.transport.handler_errors.append(exc)
            _log.exception("handler for queue %r failed", self.queue.name)
            self._recover(delivery, f"handler raised {type(exc).__name__}: {exc}")
        else:
            # A broker returns unsettled messages when their consumer goes away;
            # here the consumer of a delivery is gone once its handler returns.
            self._recover(delivery, "handler returned without settling the delivery")
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.discard(task)
            self.transport._in_flight -= 1
            if cancelled:
                self.transport._update_idle()
            else:
                self.transport._dispatch(self.queue)

    def _recover(self, delivery: _Delivery, why: str, *, dispatch: bool = True) -> None:
        if not delivery.settled:
            delivery.settle()
            self.transport._redeliver(self.queue, delivery._message, why, dispatch=dispatch)

    async def stop(self) -> None:
        """Stop taking deliveries and wait for the handlers in flight.

        Cancelling the wait (e.g. a timeout around it) cancels those handlers;
        their messages go back to the queue.
        """
        if self.active:
            self.active = False
            self.queue.consumers.remove(self)
            self.transport._dispatch(self.queue)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


@final
class MemoryTransport:
    """Implements the ``Transport`` port in one process, on the running event loop.

    Example:
        transport = MemoryTransport()
        await transport.subscribe("inventory.commands", "commands", "inventory.*", handle)
        await transport.publish("commands", "inventory.Reserve", body, message_id="m-1")
        await transport.drain()  # every consumed queue empty, no handler running

    Attributes:
        dead_letters: Messages dead-lettered so far, oldest first.
        published: Messages accepted so far, oldest first.
        handler_errors: Exceptions handlers raised (each also caused a redelivery).
    """

    def __init__(self, *, delivery_limit: int = 5) -> None:
        """Create a transport with no queues.

        Args:
            delivery_limit: Deliveries of one message before it is dead-lettered
                with reason ``delivery_limit`` instead of delivered again.

        Raises:
            ValueError: If ``delivery_limit`` is below 1.
        """
        if delivery_limit < 1:
            raise ValueError(f"delivery_limit must be at least 1, got {delivery_limit}")
        self.delivery_limit = delivery_limit
        self.dead_letters: list[DeadLetter] = []
        self.published: list[Published] = []
        self.handler_errors: list[Exception] = []
        self._queues: dict[str, _Queue] = {}
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
    ) -> None:
        """Route a message to every queue bound to match it (once per queue).

        Raises:
            UnroutableError: If no queue is bound to receive it and ``mandatory``.
            ValueError: If ``exchange`` is not one of the three exchanges.
            RuntimeError: If the transport is closed.
        """
        self._check_open()
        _check_exchange(exchange)
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
        )
        self.published.append(published)
        for queue in targets:
            queue.ready.append(_Message(published))
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
        consumer = _Consumer(self, declared, handler, prefetch)
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

    def _declare(self, queue: str, exchange: Exchange, pattern: str) -> _Queue:
        _check_exchange(exchange)
        declared = self._queues.get(queue)
        if declared is None:
            declared = self._queues[queue] = _Queue(queue)
        declared.bindings.add((exchange, pattern))
        return declared

    def _dispatch(self, queue: _Queue) -> None:
        while queue.ready:
            consumer = queue.next_consumer()
            if consumer is None:
                break
            consumer.start(queue.ready.popleft())
        self._update_idle()

    def _redeliver(
        self, queue: _Queue, message: _Message, why: str, *, dispatch: bool = True
    ) -> None:
        if message.delivery_count >= self.delivery_limit:
            detail = f"{why}; delivered {message.delivery_count} times"
            self._dead_letter(queue, message, "delivery_limit", detail)
        elif dispatch:
            queue.ready.append(message)
            self._dispatch(queue)
        else:
            queue.ready.appendleft(message)

    def _dead_letter(self, queue: _Queue, message: _Message, reason: str, detail: str) -> None:
        published = message.published
        headers = {
            **published.headers,
            routes.DEAD_LETTER_REASON_HEADER: reason,
            routes.DEAD_LETTER_DETAIL_HEADER: detail,
        }
        self.dead_letters.append(
            DeadLetter(
                queue=queue.name,
                body=published.body,
                headers=MappingProxyType(headers),
                reason=reason,
                detail=detail,
                message=published,
                delivery_count=message.delivery_count,
            )
        )
        _log.warning("dead-lettered %r from %r: %s", published.message_id, queue.name, reason)

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


def _check_exchange(exchange: str) -> None:
    if exchange not in EXCHANGES:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {', '.join(EXCHANGES)}")
