"""One subscription: a consumer on its own channel, each delivery in its own task.

The handler tasks belong to the subscription, not to aiormq: aiormq cancels
the tasks it runs when their channel closes, and a handler cancelled halfway
through a commit helps no one. A handler that outlives its channel finishes;
its settle fails quietly and the broker, which requeued the message when the
channel closed, delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import final

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

from coordinator.adapters.rabbitmq._acks import ChannelAcks
from coordinator.adapters.rabbitmq._delivery import Park, RabbitDelivery
from coordinator.adapters.rabbitmq._errors import CHANNEL_ERRORS
from coordinator.ports import Handler

__all__ = ["Consumer"]

_log = logging.getLogger("coordinator.adapters.rabbitmq")

# aio-pika waits for Basic.CancelOk and Channel.CloseOk without a limit. A broker
# that never answers (a connection dying under the frame) would hold a stop, and
# with it a drain after SIGTERM, until the process is killed. Past this wait the
# stop goes on: closing the channel, or losing the connection, returns what the
# channel still holds, which is what the cancel was for.
_BROKER_ANSWER_SECONDS = 10.0


@final
class Consumer:
    """Implements the ``Subscription`` port."""

    def __init__(
        self,
        *,
        channel: AbstractChannel,
        queue: AbstractQueue,
        name: str,
        handler: Handler,
        delivery_limit: int,
        max_message_size: int | None,
        namespace: str,
        park: Park,
    ) -> None:
        self.name = name
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._delivery_limit = delivery_limit
        self._max_message_size = max_message_size
        self._namespace = namespace
        self._park = park
        self._tag: ConsumerTag | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks = ChannelAcks()
        self._stopping = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message, no_ack=False)

    @property
    def in_flight(self) -> int:
        """Handlers running now."""
        return len(self._tasks)

    @property
    def channel_open(self) -> bool:
        return not self._channel.is_closed

    async def stop(self) -> None:
        """Cancel the consumer, wait for the handlers in flight, close the channel.

        Messages the broker sent before it saw the cancel are given back
        unhandled; closing the channel returns any it still holds.
        Cancelling this wait cancels the handlers: their messages go back.
        """
        async with self._lock:
            if not self._stopping:
                self._stopping = True
                await self._cancel()
            try:
                while self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            except asyncio.CancelledError:
                for task in self._tasks:
                    task.cancel()
                raise
            finally:
                if not self._tasks and not self._channel.is_closed:
                    await self._close_channel()

    async def _cancel(self) -> None:
        if self._tag is None:
            return
        try:
            async with asyncio.timeout(_BROKER_ANSWER_SECONDS):
                await self._queue.cancel(self._tag)
        except (*CHANNEL_ERRORS, TimeoutError) as exc:
            _log.warning("cancelling the consumer of %r failed: %r", self.name, exc)

    async def _close_channel(self) -> None:
        try:
            async with asyncio.timeout(_BROKER_ANSWER_SECONDS):
                await self._channel.close()
        except (*CHANNEL_ERRORS, TimeoutError) as exc:
            _log.warning("closing the channel of %r failed: %r", self.name, exc)

    def _on_message(self, message: AbstractIncomingMessage) -> asyncio.Task[None]:
        # A plain function returning the handler's task, not a coroutine: aio-pika
        # then calls it without a task of its own (aio_pika.tools.create_task),
        # and the delivery gets exactly one task, ours.
        delivery = RabbitDelivery.wrap(
            message,
            queue=self.name,
            namespace=self._namespace,
            delivery_limit=self._delivery_limit,
            park=self._park,
            acks=self._acks,
        )
        work = delivery.release() if self._stopping else self._run(delivery)
        task = asyncio.get_running_loop().create_task(work, name=f"saga-consume {self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, delivery: RabbitDelivery) -> None:
        try:
            if self._max_message_size is not None and len(delivery.body) > self._max_message_size:
                detail = f"{len(delivery.body)} bytes, over the limit of {self._max_message_size}"
                await delivery.dead_letter("too_large", detail)
                return
            await self._handler(delivery)
        except asyncio.CancelledError:
            if not delivery.settled:
                await delivery.give_back("handler cancelled")
            raise
        except Exception as exc:
            _log.exception("handler for queue %r failed", self.name)
            if not delivery.settled:
                await delivery.give_back(f"handler raised {type(exc).__name__}: {exc}")
        else:
            if not delivery.settled:
                await delivery.give_back("handler returned without settling the delivery")
