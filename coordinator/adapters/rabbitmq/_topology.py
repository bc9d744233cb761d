"""The RabbitMQ topology, named and argued in one place.

`RabbitTransport` declares exactly what `definitions` exports, from the same
functions, so a broker set up with ``rabbitmqctl import_definitions`` (or the
management UI's import) accepts the transport's declarations unchanged: a
declaration with other arguments would fail with ``PRECONDITION_FAILED``.

Every name is prefixed with the namespace, so several deployments (and
parallel test runs) can share one broker::

    {ns}.commands, {ns}.events, {ns}.lifecycle   topic exchanges, durable
    {ns}.dead                                    topic exchange, the dead-letter exchange
    {ns}.{queue}                                 quorum queue, dead-lettering to {ns}.dead
                                                 with routing key {queue}
    {ns}.{queue}.dead                            classic queue bound to {ns}.dead by {queue}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from contracts import routes

__all__ = [
    "DEAD_EXCHANGE",
    "DEFAULT_EXCHANGE",
    "EXCHANGES",
    "dead_queue_arguments",
    "dead_queue_name",
    "definitions",
    "exchange_name",
    "queue_arguments",
    "queue_name",
]

EXCHANGES: Final = routes.EXCHANGES
DEAD_EXCHANGE: Final = "dead"
DEFAULT_EXCHANGE: Final = ""
"""AMQP's nameless direct exchange: the routing key is the queue's name."""
EXCHANGE_TYPE: Final = "topic"


def exchange_name(namespace: str, exchange: str) -> str:
    """The broker name of one of the three exchanges, or of ``dead``."""
    return routes.address(namespace, exchange)


def queue_name(namespace: str, queue: str) -> str:
    return routes.address(namespace, queue)


def dead_queue_name(namespace: str, queue: str) -> str:
    return routes.address(namespace, f"{queue}.dead")


def queue_arguments(namespace: str, queue: str, *, delivery_limit: int) -> dict[str, str | int]:
    """The arguments of a consumed queue: quorum, a delivery limit, dead-lettering.

    ``delivery_limit`` counts deliveries, as the ``Transport`` port does (the
    in-memory transport delivers a message at most that many times). RabbitMQ's
    ``x-delivery-limit`` counts *returns*: with limit N a message is delivered
    N + 1 times (checked on 3.10.8: limit 2, three deliveries, then the
    dead-letter exchange). Hence ``delivery_limit - 1``.

    Dead-lettering is ``at-least-once`` (a quorum queue keeps the message until
    the dead-letter queue confirmed it; the default drops it if that fails),
    which RabbitMQ only honours with ``x-overflow: reject-publish``. No length
    limit is set, so that overflow never triggers.

    Raises:
        ValueError: If ``delivery_limit`` is below 1.
    """
    if delivery_limit < 1:
        raise ValueError(f"delivery_limit must be at least 1, got {delivery_limit}")
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit - 1,
        "x-dead-letter-exchange": exchange_name(namespace, DEAD_EXCHANGE),
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_queue_arguments() -> dict[str, str | int]:
    """The arguments of a dead-letter queue: a classic queue, on purpose.

    Listing dead letters takes them without acknowledging and lets the channel
    close requeue them. A classic queue puts them back in place and counts
    nothing; a quorum queue would count each listing as a failed delivery and
    (RabbitMQ 4 applies a default limit of 20) eventually drop them.
    """
    return {"x-queue-type": "classic"}


def definitions(
    namespace: str, services: Iterable[str], *, delivery_limit: int, vhost: str = "/"
) -> dict[str, list[dict[str, object]]]:
    """RabbitMQ definitions (exchanges, queues, bindings) for one deployment.

    The same topology `RabbitTransport` declares when the coordinator and the
    participants subscribe: ``coordinator.events`` bound to ``events`` by
    ``#``, one ``{service}.commands`` bound to ``commands`` by ``{service}.*``
    per service, a dead-letter queue for each, and the ``lifecycle`` exchange.

    Args:
        namespace: The prefix of every name, e.g. ``saga``.
        services: The participant services.
        delivery_limit: Deliveries of a message before it is dead-lettered.
        vhost: The virtual host the definitions go to.

    Returns:
        A JSON-ready dict for ``rabbitmqctl import_definitions`` or the
        management API's ``POST /api/definitions``.
    """
    consumed = [(routes.EVENTS_QUEUE, "events", routes.EVENTS_BINDING)]
    consumed += [
        (routes.commands_queue(s), "commands", routes.commands_binding(s))
        for s in sorted(set(services))
    ]

    exchanges = [
        {
            "name": exchange_name(namespace, name),
            "vhost": vhost,
            "type": EXCHANGE_TYPE,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for name in (*EXCHANGES, DEAD_EXCHANGE)
    ]
    queues: list[dict[str, object]] = []
    bindings: list[dict[str, object]] = []
    for queue, exchange, pattern in consumed:
        queues.append(
            _queue(
                queue_name(namespace, queue),
                vhost,
                queue_arguments(namespace, queue, delivery_limit=delivery_limit),
            )
        )
        queues.append(_queue(dead_queue_name(namespace, queue), vhost, dead_queue_arguments()))
        bindings.append(
            _binding(
                exchange_name(namespace, exchange), queue_name(namespace, queue), pattern, vhost
            )
        )
        bindings.append(
            _binding(
                exchange_name(namespace, DEAD_EXCHANGE),
                dead_queue_name(namespace, queue),
                queue,
                vhost,
            )
        )
    return {"exchanges": list(exchanges), "queues": queues, "bindings": bindings}


def _queue(name: str, vhost: str, arguments: dict[str, str | int]) -> dict[str, object]:
    return {
        "name": name,
        "vhost": vhost,
        "durable": True,
        "auto_delete": False,
        "arguments": arguments,
    }


def _binding(source: str, destination: str, routing_key: str, vhost: str) -> dict[str, object]:
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": "queue",
        "routing_key": routing_key,
        "arguments": {},
    }
