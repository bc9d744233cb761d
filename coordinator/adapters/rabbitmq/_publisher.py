"""Publishing with confirms on one channel, the broker's answers made errors.

aio-pika raises ``PublishError`` on ``basic.return`` only with
``on_return_raises=True`` (the default drops an unroutable message quietly),
``DeliveryError`` on ``basic.nack``, and waits forever for a confirm that a
dead connection will never send: hence the timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import final

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from coordinator._errors import PublishFailedError, UnroutableError
from coordinator.adapters.rabbitmq._errors import CHANNEL_ERRORS, TopologyMismatchError
from coordinator.adapters.rabbitmq._topology import (
    DEAD_EXCHANGE,
    DEFAULT_EXCHANGE,
    EXCHANGE_TYPE,
    EXCHANGES,
    exchange_name,
)

__all__ = ["Publisher"]


@final
class Publisher:
    """The publishing channel (confirms on) and the namespace's exchanges on it."""

    def __init__(self, exchanges: Mapping[str, AbstractExchange], timeout: timedelta) -> None:
        self._exchanges = dict(exchanges)
        self._timeout = timeout

    @classmethod
    async def open(
        cls, connection: AbstractRobustConnection, namespace: str, timeout: timedelta
    ) -> Publisher:
        """Open the channel and declare the exchanges (durable topic, ``dead`` included).

        Raises:
            TopologyMismatchError: If an exchange exists with other settings.
        """
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges: dict[str, AbstractExchange] = {}
        try:
            for name in (*EXCHANGES, DEAD_EXCHANGE):
                exchanges[name] = await channel.declare_exchange(
                    exchange_name(namespace, name), EXCHANGE_TYPE, durable=True
                )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TopologyMismatchError(str(exc)) from exc
        # For dead letters moved back: straight to their queue, no other.
        exchanges[DEFAULT_EXCHANGE] = channel.default_exchange
        return cls(exchanges, timeout)

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str],
        mandatory: bool,
    ) -> None:
        """Publish persistently as JSON and wait for the confirm.

        ``exchange`` is the name without the namespace: one of the three, ``dead``,
        or ``""`` (the default exchange, ``routing_key`` then naming the queue).

        Raises:
            UnroutableError: If the broker returned it (``mandatory`` only).
            PublishFailedError: If it was nacked, not confirmed in time, or the
                channel was lost.
        """
        message = aio_pika.Message(
            body,
            headers=dict(headers),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        try:
            # aiormq bounds the write and the wait for the confirm with this timeout.
            await self._exchanges[exchange].publish(
                message, routing_key, mandatory=mandatory, timeout=self._timeout.total_seconds()
            )
        except aiormq.exceptions.PublishError as exc:
            raise UnroutableError(exchange, routing_key) from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishFailedError(
                f"the broker refused message {message_id!r}: {exc}",
                reason="nacked",
                message_id=message_id,
            ) from exc
        except TimeoutError as exc:
            raise PublishFailedError(
                f"no confirm for message {message_id!r} within {self._timeout}",
                reason="timeout",
                message_id=message_id,
            ) from exc
        except CHANNEL_ERRORS as exc:
            raise PublishFailedError(
                f"could not publish message {message_id!r}: {exc!r}",
                reason="connection",
                message_id=message_id,
            ) from exc
