"""The ``DeadLetters`` port on RabbitMQ: each queue's dead-letter queue, read and moved back.

A dead-letter queue is a classic queue (see ``_topology.dead_queue_arguments``),
read with ``basic.get`` without acknowledging: what is only looked at goes
back, in place, when the reading channel closes. What is taken out is
acknowledged, and only after a move back to its queue was confirmed, so a
failure half way leaves it where it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, final

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, HeadersType

from contracts import routes
from coordinator.adapters.rabbitmq._delivery import string_headers
from coordinator.adapters.rabbitmq._topology import DEFAULT_EXCHANGE, dead_queue_name, queue_name
from coordinator.ports import DeadLetter, Resign

if TYPE_CHECKING:
    from coordinator.adapters.rabbitmq._transport import RabbitTransport

__all__ = ["RabbitDeadLetters", "read_dead_letter"]


@final
class RabbitDeadLetters:
    """Implements the ``DeadLetters`` port on the broker of a `RabbitTransport`.

    Example:
        dead_letters = RabbitDeadLetters(transport)
        for letter in await dead_letters.list("inventory.commands"):
            print(letter.message_id, letter.reason, letter.detail)
        await dead_letters.redrive("inventory.commands", ["m-1"])
    """

    def __init__(self, transport: RabbitTransport, *, resign: Resign | None = None) -> None:
        """Dead letters on ``transport``'s broker; ``resign`` signs those moved back."""
        self._transport = transport
        self._resign = resign

    async def list(
        self, queue: str, limit: int = 100, *, remove: bool = False
    ) -> Sequence[DeadLetter]:
        """The messages in ``queue``'s dead-letter queue, oldest first.

        Args:
            queue: The consumed queue, as given to ``subscribe``.
            limit: Read at most this many.
            remove: Take them out of the dead-letter queue (acknowledged: gone).
        """
        letters: list[DeadLetter] = []
        async with self._dead_queue(queue) as dead:
            while dead is not None and len(letters) < limit:
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.append(read_dead_letter(message, queue, self._transport.namespace))
                if remove:
                    await message.ack()
        return letters

    async def redrive(
        self, queue: str, message_ids: Collection[str] | None = None, *, limit: int = 100
    ) -> Sequence[DeadLetter]:
        """Move dead letters back to the end of ``queue``: those of ``message_ids``, or all.

        Each goes by the default exchange straight to ``queue`` (and no other
        queue bound by its routing key), as a new message: the quorum queue
        counts its deliveries from one again. It keeps its message id, body
        and headers, and says where it was first published
        (``x-original-exchange``, ``x-original-routing-key``), so that it
        keeps saying so if it is dead-lettered again.

        Why not republish to the original exchange and routing key: a dead
        letter is one queue's failure, and the other queues bound to that key
        (a second service's ``{service}.*``, a listener's ``#`` on ``events``)
        took their copy when it was first published. Publishing it there again
        would hand each of them a second copy, under the same message id, of a
        message they already handled. The original exchange and key are kept
        in the headers for the consumer and for a second dead-lettering.

        Order, so that nothing is lost: the letter is read unacknowledged,
        published with confirms and ``mandatory`` (the publisher returns only
        once the broker confirmed it, and raises if it was returned or
        nacked), and acknowledged in the dead-letter queue only then. A crash
        in between leaves it in the dead letters and its copy in the queue (a
        duplicate, which consumers dedupe by message id), never neither.

        Raises:
            UnroutableError: If ``queue`` no longer exists; that letter stays.
            PublishFailedError: If the broker did not confirm a move; it stays.
        """
        moved: list[DeadLetter] = []
        publisher = self._transport._publisher
        async with self._dead_queue(queue) as dead:
            while dead is not None and len(moved) < limit:
                message = await dead.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = read_dead_letter(message, queue, self._transport.namespace)
                if message_ids is not None and letter.message_id not in message_ids:
                    continue  # not acked: back in place when the channel closes
                headers: Mapping[str, str] = _moved_back(letter)
                if self._resign is not None:
                    headers = self._resign(
                        letter.exchange, letter.routing_key, letter.body, letter.message_id, headers
                    )
                await publisher.publish(
                    DEFAULT_EXCHANGE,
                    queue_name(self._transport.namespace, queue),
                    letter.body,
                    message_id=letter.message_id,
                    headers=headers,
                    mandatory=True,
                    # Moved under the mover's name: who checks senders sees who redrove it.
                    user_id=self._transport.user or None,
                    user=self._transport.user,
                )
                await message.ack()
                moved.append(letter)
        return moved

    async def purge(self, queue: str) -> int:
        """Drop every dead letter of ``queue`` (``queue.purge``); returns how many."""
        async with self._dead_queue(queue) as dead:
            if dead is None:
                return 0
            result = await dead.purge()
            return int(result.message_count or 0)

    async def exists(self, queue: str) -> bool:
        """Whether ``queue``'s dead-letter queue was declared (with ``queue`` itself)."""
        async with self._dead_queue(queue) as dead:
            return dead is not None

    @asynccontextmanager
    async def _dead_queue(self, queue: str) -> AsyncIterator[AbstractQueue | None]:
        # None when it was never declared: a queue with no dead letters.
        self._transport._check_open()
        async with self._transport._channel() as channel:
            try:
                dead = await channel.declare_queue(
                    dead_queue_name(self._transport.namespace, queue), passive=True
                )
            except aiormq.exceptions.ChannelNotFoundEntity:
                yield None
            else:
                yield dead


def read_dead_letter(message: AbstractIncomingMessage, queue: str, namespace: str) -> DeadLetter:
    """A message of a dead-letter queue as a `DeadLetter`.

    Parked by the transport, it carries the reason and where it came from in
    its headers; dead-lettered by the broker (the delivery limit), only in the
    broker's ``x-death`` table.
    """
    raw = message.headers or {}
    headers = string_headers(raw)
    if routes.DEAD_LETTER_REASON_HEADER in headers:
        return DeadLetter(
            queue=headers.get(routes.ORIGINAL_QUEUE_HEADER, queue),
            message_id=message.message_id or "",
            body=message.body,
            headers=headers,
            reason=headers[routes.DEAD_LETTER_REASON_HEADER],
            detail=headers.get(routes.DEAD_LETTER_DETAIL_HEADER, ""),
            exchange=headers.get(routes.ORIGINAL_EXCHANGE_HEADER, ""),
            routing_key=headers.get(routes.ORIGINAL_ROUTING_KEY_HEADER, ""),
        )
    death = _latest_death(raw)
    reason = str(
        death.get("reason")
        or raw.get("x-last-death-reason")
        or raw.get("x-first-death-reason")
        or "unknown"
    )
    keys = death.get("routing-keys")
    when = death.get("time")
    if isinstance(when, datetime):  # the broker's clock, to the second
        at = when if when.tzinfo else when.replace(tzinfo=UTC)
        headers[routes.DEAD_LETTER_AT_HEADER] = at.isoformat()
    return DeadLetter(
        queue=queue,
        message_id=message.message_id or "",
        body=message.body,
        headers=headers,
        reason=reason,
        detail=f"dead-lettered by the broker from {death.get('queue', queue)!s}: {reason}",
        exchange=str(death.get("exchange") or "").removeprefix(routes.address(namespace, "")),
        routing_key=str(keys[0]) if isinstance(keys, list) and keys else "",
    )


def _moved_back(letter: DeadLetter) -> dict[str, str]:
    headers = {k: v for k, v in letter.headers.items() if k not in routes.DEAD_LETTER_HEADERS}
    headers[routes.ORIGINAL_EXCHANGE_HEADER] = letter.exchange
    headers[routes.ORIGINAL_ROUTING_KEY_HEADER] = letter.routing_key
    return headers


def _latest_death(raw: HeadersType) -> Mapping[str, object]:
    # x-death holds one entry per (queue, reason), the latest dead-lettering
    # first: the one that brought the message here.
    deaths = raw.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}
