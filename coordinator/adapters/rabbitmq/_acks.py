"""The acks of one consumer's channel, sent together.

Acked one by one, every delivery costs a frame each way through the client
and, on a quorum queue, a settle command in the queue's Raft log. Acks made
in the same turn of the event loop are sent together at its end: the run of
consecutive delivery tags from the oldest one still open as a single
``basic.ack`` with ``multiple``, any others one by one. An ack never waits for
a slower handler, and ``ack()`` returns once its frame is written, as an
unbatched ack does.
"""

from __future__ import annotations

import asyncio
from typing import final

from aio_pika.abc import AbstractIncomingMessage

__all__ = ["ChannelAcks"]


@final
class ChannelAcks:
    """Tracks the deliveries of one channel that are not settled yet.

    ``multiple`` settles every earlier unsettled tag of the channel, so each
    delivery must be announced (`delivered`) and each one settled otherwise
    than by `ack` must be withdrawn first (`withdraw`).
    """

    def __init__(self) -> None:
        self._channel: object = None
        # Open deliveries by tag, oldest first: None until acked, then the message.
        self._open: dict[int, AbstractIncomingMessage | None] = {}
        self._waiting: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        # One batch written at a time, in order: a later ``multiple`` ack must
        # not reach the broker before an earlier single ack that it covers.
        self._in_order = asyncio.Lock()

    def delivered(self, message: AbstractIncomingMessage) -> None:
        if message.channel is not self._channel:  # a new channel: tags start over
            self._channel = message.channel
            self._open.clear()
        if message.delivery_tag is not None:
            self._open[message.delivery_tag] = None

    def withdraw(self, message: AbstractIncomingMessage) -> None:
        """It is settled another way (reject, nack): never cover it with ``multiple``."""
        if message.channel is self._channel and message.delivery_tag is not None:
            self._open.pop(message.delivery_tag, None)

    async def ack(self, message: AbstractIncomingMessage) -> None:
        tag = message.delivery_tag
        if message.channel is not self._channel or tag is None or tag not in self._open:
            await message.ack()  # not tracked (a channel that went away): alone
            return
        self._open[tag] = message
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._waiting.append(written)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        await written

    def _flush(self) -> None:
        self._scheduled = False
        # The oldest open deliveries that are all acked: one ``multiple`` ack
        # for the newest of them (tags arrive in order, so the dict is sorted).
        last: AbstractIncomingMessage | None = None
        for acked in self._open.values():
            if acked is None:
                break
            last = acked
        if last is not None:
            for tag in [t for t in self._open if t <= (last.delivery_tag or 0)]:
                del self._open[tag]
        alone = [m for m in self._open.values() if m is not None]
        for message in alone:
            del self._open[message.delivery_tag or 0]
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(last, alone, waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self,
        last: AbstractIncomingMessage | None,
        alone: list[AbstractIncomingMessage],
        waiting: list[asyncio.Future[None]],
    ) -> None:
        try:
            async with self._in_order:
                if last is not None:
                    await last.ack(multiple=True)
                for message in alone:
                    await message.ack()
        except Exception as exc:  # the channel closed: every ack of the batch failed
            for future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for future in waiting:
                future.cancel()
            raise
        for future in waiting:
            if not future.done():
                future.set_result(None)
