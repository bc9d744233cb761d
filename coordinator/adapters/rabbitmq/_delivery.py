"""One AMQP delivery behind the ``Delivery`` port.

Settling follows the in-memory transport exactly: a message given back
(``requeue``, a handler that raised or returned without settling) is
redelivered until it has been delivered ``delivery_limit`` times, then
dead-lettered with reason ``delivery_limit`` and the why in the detail. The
quorum queue's own ``x-delivery-limit`` is the backstop for what the client
cannot do itself (a consumer that died mid-handler); RabbitMQ then puts the
reason only in its ``x-death`` table, which ``_admin.read_dead_letter`` reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final, final

from aio_pika.abc import AbstractIncomingMessage, HeadersType

from contracts import routes
from coordinator.adapters.rabbitmq._acks import ChannelAcks
from coordinator.adapters.rabbitmq._errors import CHANNEL_ERRORS

__all__ = ["Park", "RabbitDelivery", "delivery_count", "published_as", "string_headers"]

_log = logging.getLogger("coordinator.adapters.rabbitmq")

# Put there by the broker, not by the publisher: not part of the message.
_BROKER_HEADERS: Final = frozenset({"x-delivery-count", "x-death"})
_BROKER_PREFIXES: Final = ("x-first-death-", "x-last-death-")
# A header must fit in one AMQP frame with the others (frame_max: 128 KiB).
MAX_DETAIL: Final = 2000


Park = Callable[[str, bytes, str, Mapping[str, str]], Awaitable[None]]
"""Publish ``(queue, body, message_id, headers)`` to the dead-letter exchange, confirmed."""


def string_headers(raw: HeadersType | None) -> dict[str, str]:
    """The publisher's headers as strings; the broker's bookkeeping left out."""
    headers: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if key in _BROKER_HEADERS or key.startswith(_BROKER_PREFIXES):
            continue
        if isinstance(value, str):
            headers[key] = value
        elif isinstance(value, bytes | bytearray | memoryview):
            headers[key] = bytes(value).decode("utf-8", errors="replace")
        elif isinstance(value, bool | int | float | Decimal | dt.datetime):
            headers[key] = str(value)
        # Tables and arrays have no string form the port could promise.
    return headers


def published_as(
    message: AbstractIncomingMessage, headers: Mapping[str, str], namespace: str
) -> tuple[str, str]:
    """The exchange (without the namespace) and routing key ``message`` was published with.

    A dead letter moved back came by the default exchange (``""``) and says
    where it was first published in its headers: that is what it answers to.
    """
    if not message.exchange:
        return (
            headers.get(routes.ORIGINAL_EXCHANGE_HEADER, ""),
            headers.get(routes.ORIGINAL_ROUTING_KEY_HEADER, message.routing_key or ""),
        )
    return message.exchange.removeprefix(routes.address(namespace, "")), message.routing_key or ""


def delivery_count(raw: HeadersType | None) -> int:
    """1 on first delivery: a quorum queue's ``x-delivery-count`` counts earlier returns."""
    value = (raw or {}).get("x-delivery-count")
    return int(value) + 1 if isinstance(value, int) else 1


@final
@dataclass(slots=True, eq=False, kw_only=True)
class RabbitDelivery:
    """Implements the ``Delivery`` port for one message from a quorum queue."""

    message_id: str
    body: bytes
    headers: Mapping[str, str]
    delivery_count: int
    queue: str
    exchange: str
    routing_key: str
    user_id: str | None
    settled: bool = False
    _message: AbstractIncomingMessage
    _delivery_limit: int
    _park: Park = field(repr=False)
    _acks: ChannelAcks = field(repr=False)

    @classmethod
    def wrap(
        cls,
        message: AbstractIncomingMessage,
        *,
        queue: str,
        namespace: str,
        delivery_limit: int,
        park: Park,
        acks: ChannelAcks,
    ) -> RabbitDelivery:
        acks.delivered(message)
        headers = string_headers(message.headers)
        exchange, routing_key = published_as(message, headers, namespace)
        return cls(
            message_id=message.message_id or "",
            body=message.body,
            headers=MappingProxyType(headers),
            delivery_count=delivery_count(message.headers),
            queue=queue,
            exchange=exchange,
            routing_key=routing_key,
            user_id=message.user_id or None,
            _message=message,
            _delivery_limit=delivery_limit,
            _park=park,
            _acks=acks,
        )

    async def ack(self) -> None:
        self._settle()
        await self._quietly("ack", self._ack)

    async def requeue(self) -> None:
        await self.give_back("requeued")

    async def dead_letter(self, reason: str, detail: str) -> None:
        """Park a copy with the reason in the dead-letter queue, then ack the original.

        The copy is confirmed before the original is acked, so the message
        is never lost: if parking fails it is requeued instead (and reaches
        the dead letters through the queue's delivery limit at the latest).
        If the ack fails after the copy was parked, the message comes again
        and may be parked twice.
        """
        self._settle()
        headers = {
            **{k: v for k, v in self.headers.items() if k != routes.ORIGINAL_USER_ID_HEADER},
            # The property is the parker's to set, not the sender's: kept as a header.
            **({routes.ORIGINAL_USER_ID_HEADER: self.user_id} if self.user_id else {}),
            routes.DEAD_LETTER_REASON_HEADER: reason,
            routes.DEAD_LETTER_DETAIL_HEADER: detail[:MAX_DETAIL],
            routes.DEAD_LETTER_AT_HEADER: dt.datetime.now(dt.UTC).isoformat(),
            routes.ORIGINAL_QUEUE_HEADER: self.queue,
            # A dead letter moved back came by the default exchange and says
            # where it was first published; it keeps saying so.
            routes.ORIGINAL_EXCHANGE_HEADER: self.headers.get(routes.ORIGINAL_EXCHANGE_HEADER)
            or self._message.exchange
            or "",
            routes.ORIGINAL_ROUTING_KEY_HEADER: self.headers.get(routes.ORIGINAL_ROUTING_KEY_HEADER)
            or self._message.routing_key
            or "",
        }
        try:
            await self._park(self.queue, self.body, self.message_id, headers)
        except Exception:
            _log.exception(
                "could not dead-letter %r from %r (%s); requeued instead",
                self.message_id,
                self.queue,
                reason,
            )
            await self._quietly("requeue", self._reject_requeue)
            return
        _log.warning("dead-lettered %r from %r: %s", self.message_id, self.queue, reason)
        await self._quietly("ack", self._ack)

    async def give_back(self, why: str) -> None:
        """Redeliver, or dead-letter with reason ``delivery_limit`` on the last delivery."""
        if self.delivery_count >= self._delivery_limit:
            detail = f"{why}; delivered {self.delivery_count} times"
            await self.dead_letter("delivery_limit", detail)
            return
        self._settle()
        # reject, not nack: RabbitMQ 4.3 counts only rejects towards the limit.
        await self._quietly("requeue", self._reject_requeue)

    async def release(self) -> None:
        """Give back a message no handler saw (the subscription is stopping).

        ``nack``: on RabbitMQ 4.3 it does not count towards the delivery limit.
        """
        self._settle()
        await self._quietly("release", self._nack_requeue)

    async def _ack(self) -> None:
        await self._acks.ack(self._message)

    async def _reject_requeue(self) -> None:
        self._acks.withdraw(self._message)
        await self._message.reject(requeue=True)

    async def _nack_requeue(self) -> None:
        self._acks.withdraw(self._message)
        await self._message.nack(requeue=True)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"delivery of {self.message_id!r} is already settled")
        self.settled = True

    async def _quietly(self, what: str, settle: Callable[[], Awaitable[None]]) -> None:
        try:
            await settle()
        except CHANNEL_ERRORS as exc:
            # The channel closed under the delivery (e.g. a reconnect): the
            # broker has requeued it already and will deliver it again.
            _log.warning(
                "could not %s %r from %r, the broker will redeliver it: %r",
                what,
                self.message_id,
                self.queue,
                exc,
            )
