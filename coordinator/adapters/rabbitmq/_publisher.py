"""Publishing with confirms on one channel, the broker's answers made errors.

aio-pika raises ``PublishError`` on ``basic.return`` only with
``on_return_raises=True`` (the default drops an unroutable message quietly),
``DeliveryError`` on ``basic.nack``, and waits forever for a confirm that a
dead connection will never send: hence the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import timedelta
from typing import final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from coordinator._errors import PublishFailedError, UnroutableError, WrongUserError
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

    def __init__(
        self,
        exchanges: Mapping[str, AbstractExchange],
        timeout: timedelta,
        channel: AbstractChannel | None = None,
    ) -> None:
        self._exchanges = dict(exchanges)
        self._timeout = timeout
        self._channel = channel

    @property
    def channel_open(self) -> bool:
        return self._channel is None or not self._channel.is_closed

    async def _reopened(self) -> None:
        # The broker closed the channel over one message; aio-pika reopens it at once.
        # Waiting here (briefly: a reopen is one round trip) spares the next publish a
        # "channel closed" failure that is not its own.
        channel = self._channel
        if channel is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout.total_seconds()):
                while channel.is_closed:
                    await asyncio.sleep(0.01)

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
        return cls(exchanges, timeout, channel)

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str],
        mandatory: bool,
        user_id: str | None = None,
        user: str = "",
    ) -> None:
        """Publish persistently as JSON and wait for the confirm.

        ``exchange`` is the name without the namespace: one of the three, ``dead``,
        or ``""`` (the default exchange, ``routing_key`` then naming the queue).

        Raises:
            UnroutableError: If the broker returned it (``mandatory`` only).
            PublishFailedError: If it was nacked, not confirmed in time, or the
                channel was lost.
            WrongUserError: If the broker refused ``user_id`` (not ``user``, the
                connection's); it closed the channel, which aio-pika reopens.
        """
        message = aio_pika.Message(
            body,
            headers=dict(headers),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            user_id=user_id,
        )
        try:
            # aiormq bounds the write and the wait for the confirm with this timeout.
            await self._exchanges[exchange].publish(
                message, routing_key, mandatory=mandatory, timeout=self._timeout.total_seconds()
            )
        except aiormq.exceptions.PublishError as exc:
            raise UnroutableError(exchange, routing_key) from exc
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            # "PRECONDITION_FAILED - user_id property set to 'x' but authenticated user was 'y'"
            if user_id is not None and "user_id" in str(exc):
                await self._reopened()
                raise WrongUserError(user_id, user or "another user") from exc
            raise PublishFailedError(
                f"could not publish message {message_id!r}: {exc!r}",
                reason="connection",
                message_id=message_id,
            ) from exc
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
