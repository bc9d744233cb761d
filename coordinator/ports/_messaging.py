"""Messaging ports: the transport, its deliveries, and the dead letters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeAlias

import msgspec

from contracts import routes

__all__ = [
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Exchange",
    "Handler",
    "Resign",
    "Subscription",
    "Transport",
]

Exchange: TypeAlias = routes.Exchange


class Delivery(Protocol):
    """One message handed to a consumer. Settle it exactly once."""

    @property
    def message_id(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def exchange(self) -> str:
        """The exchange it was published to (without the namespace), e.g. ``events``.

        A dead letter moved back keeps the exchange it was first published to.
        """
        ...

    @property
    def routing_key(self) -> str:
        """The routing key it was published with (a moved-back dead letter: the first one)."""
        ...

    @property
    def user_id(self) -> str | None:
        """The AMQP ``user_id`` it was published with: the broker has checked that it is
        the user name of the publishing connection. None when the publisher set none."""
        ...

    @property
    def delivery_count(self) -> int:
        """1 on first delivery; grows with each redelivery of the same message."""
        ...

    async def ack(self) -> None:
        """Done: the effects of this message are committed."""

    async def requeue(self) -> None:
        """Try again later (a transient failure); counts towards the delivery limit."""

    async def dead_letter(self, reason: str, detail: str) -> None:
        """Never deliverable: park it in the dead-letter queue with the reason."""


Handler = Callable[[Delivery], Awaitable[None]]

Resign = Callable[[str, str, bytes, str, Mapping[str, str]], Mapping[str, str]]
"""``(exchange, routing_key, body, message_id, headers)`` to the headers a dead letter
moved back is sent with: signed afresh, when messages are signed."""


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop taking new deliveries and wait for the handlers in flight."""


class Transport(Protocol):
    """Publish to a topic exchange; consume from a queue bound to one."""

    @property
    def user(self) -> str:
        """The user name the connection authenticated as; ``""`` when not known here
        (e.g. a certificate login, where the broker takes it from the certificate)."""
        ...

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
        """Publish and return once the broker has taken responsibility for it.

        With ``mandatory`` (commands, replies) a message no queue is bound to
        receive raises; without it (lifecycle events, for whoever listens) it is
        dropped, as a topic exchange does. ``user_id`` names the sender; the
        broker refuses one that is not the connection's `user` (`WrongUserError`),
        so a consumer can trust it.
        """

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        """Declare ``queue`` bound to ``exchange`` by ``pattern``, without consuming it."""

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        """Declare ``queue`` bound to ``exchange`` by ``pattern`` and consume it."""
        ...


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message parked in a queue's dead letters, for an operator to look at.

    Attributes:
        queue: The queue it was dead-lettered from (without a namespace).
        message_id: Its message id.
        body: The body, unchanged.
        headers: Its headers, plus ``x-death-reason`` and ``x-death-detail``
            (`contracts.routes`) when the transport parked it.
        reason: A short machine code, e.g. ``malformed_json``, or
            ``delivery_limit`` for a message delivered too often.
        detail: What was wrong, for a human.
        exchange: The exchange it was published to.
        routing_key: The routing key it was published with.
        delivery_count: How many times it had been delivered, where the
            transport knows (None: RabbitMQ does not keep it).
    """

    queue: str
    message_id: str
    body: bytes
    headers: Mapping[str, str]
    reason: str
    detail: str
    exchange: str
    routing_key: str
    delivery_count: int | None = None

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it was parked (header ``x-death-at``), if that is known."""
        stamp = self.headers.get(routes.DEAD_LETTER_AT_HEADER)
        if not stamp:
            return None
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            return None


class DeadLetters(Protocol):
    """The dead letters of each queue: read them, drop them, move them back.

    Oldest first. A message moved back (`redrive`) goes to the end of the
    queue it was dead-lettered from, and only there, as a new delivery
    (``delivery_count`` 1) with its own headers, its message id and body.
    """

    async def list(
        self, queue: str, limit: int = 100, *, remove: bool = False
    ) -> Sequence[DeadLetter]:
        """At most ``limit`` dead letters of ``queue``; taken out of them with ``remove``.

        A queue that was never declared has none.
        """
        ...

    async def redrive(
        self, queue: str, message_ids: Collection[str] | None = None, *, limit: int = 100
    ) -> Sequence[DeadLetter]:
        """Move dead letters of ``queue`` back to it: those of ``message_ids``, or all.

        Returns:
            The dead letters moved (at most ``limit``), oldest first. The
            others keep their place.

        Raises:
            UnroutableError: If ``queue`` no longer exists. A letter is taken
                out only once it was moved, so none is lost.
        """
        ...

    async def purge(self, queue: str) -> int:
        """Drop every dead letter of ``queue``; returns how many were dropped.

        A queue that was never declared has none to drop.
        """
        ...

    async def exists(self, queue: str) -> bool:
        """Whether ``queue`` was declared (it has a place for dead letters, empty or not)."""
        ...
