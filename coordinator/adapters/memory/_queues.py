"""The in-memory broker's queues: messages waiting, consumers taking them, deliveries.

A queue hands each message to the next consumer with a free prefetch slot,
round robin; the consumer runs its handler in a task and gives the message
back to the transport (`MemoryTransport`) when the handler raised, requeued
it or returned without settling it. The transport decides what happens then
(redelivery or the dead letters) and keeps the count of handlers in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

from coordinator.ports import Exchange, Handler

if TYPE_CHECKING:
    from coordinator.adapters.memory._transport import MemoryTransport

__all__ = ["Consumer", "MemoryDelivery", "Message", "Published", "Queue"]

_log = logging.getLogger("coordinator.adapters.memory")


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """One message the transport accepted."""

    exchange: Exchange
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str]
    user_id: str | None = None


@dataclass(slots=True, eq=False)
class Message:
    """A published message in one queue, with its deliveries so far."""

    published: Published
    delivery_count: int = 0


@dataclass(slots=True, eq=False)
class Queue:
    name: str
    bindings: set[tuple[Exchange, str]] = field(default_factory=set)
    ready: deque[Message] = field(default_factory=deque)
    consumers: list[Consumer] = field(default_factory=list)
    turn: int = 0

    def next_consumer(self) -> Consumer | None:
        """The next consumer with a free prefetch slot, round robin."""
        for offset in range(len(self.consumers)):
            index = (self.turn + offset) % len(self.consumers)
            if self.consumers[index].has_capacity():
                self.turn = index + 1
                return self.consumers[index]
        return None


@final
@dataclass(slots=True, eq=False, kw_only=True)
class MemoryDelivery:
    """Implements the ``Delivery`` port: one delivery of one message."""

    body: bytes
    headers: Mapping[str, str]
    delivery_count: int
    message_id: str
    exchange: str
    routing_key: str
    user_id: str | None
    settled: bool = False
    _consumer: Consumer
    _message: Message

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
class Consumer:
    """One subscription: a handler taking deliveries from a queue."""

    def __init__(
        self, transport: MemoryTransport, queue: Queue, handler: Handler, prefetch: int
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.active = True
        self.tasks: set[asyncio.Task[None]] = set()

    def has_capacity(self) -> bool:
        return self.active and len(self.tasks) < self.prefetch

    def start(self, message: Message) -> None:
        message.delivery_count += 1
        published = message.published
        delivery = MemoryDelivery(
            body=published.body,
            headers=published.headers,
            delivery_count=message.delivery_count,
            message_id=published.message_id,
            exchange=published.exchange,
            routing_key=published.routing_key,
            user_id=published.user_id,
            _consumer=self,
            _message=message,
        )
        self.transport._in_flight += 1
        self.tasks.add(asyncio.get_running_loop().create_task(self._run(delivery)))

    async def _run(self, delivery: MemoryDelivery) -> None:
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

    def _recover(self, delivery: MemoryDelivery, why: str, *, dispatch: bool = True) -> None:
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
