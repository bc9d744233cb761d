"""RabbitMQ users and permissions for one namespace, in the definitions-file format.

`user_definitions` adds to `definitions` (``saga topology --export --users``) one
user per role, each allowed what its process does and nothing more::

    {ns}.coordinator   configure, write and read every {ns}.* resource, and write
                       to the default exchange (moving dead letters back)
    {ns}.operator      write to {ns}.events, routing keys control.* only; read
                       the dead-letter queues ({ns}.*.dead), to list them
    {ns}.{service}     read its own {ns}.{service}.commands; write to {ns}.events,
                       routing keys reply.{service}.* only; write to {ns}.dead,
                       routing key {service}.commands only (how the transport parks
                       a message it cannot handle, see ``_delivery``)

What "configure" must allow follows from what a process declares when it
connects (the broker checks configure on a declaration even when the resource
exists unchanged): every process declares the four exchanges (``_publisher``),
and a participant declares its queue and that queue's dead-letter queue and binds
them (``_transport._declare_on``: write on the queue, read on the exchange, and
the binding key is checked against the topic permission's ``read``).

Passwords are not in the file: each user has an empty ``password_hash``, which
RabbitMQ reads as "no password", so nobody can log in as it until a password is
set (``rabbitmqctl change_password USER``, or the management API). A secret
generated into a file that is checked in or printed to a terminal would be a
secret in the wrong place; one that is set from the deployment's own secret
store after the import stays there.

Publishing with ``user_id`` set to the connection's user name lets the broker
vouch for the sender: RabbitMQ refuses (``PRECONDITION_FAILED``) a message whose
``user_id`` is not the user of the connection that published it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from contracts import routes
from coordinator.adapters.rabbitmq._topology import (
    DEAD_EXCHANGE,
    EXCHANGES,
    exchange_name,
)

__all__ = ["ROLES", "participant_user", "user_definitions"]

ROLES: Final = ("coordinator", "operator")
"""The users every namespace has besides one per participant service."""

_NOTHING: Final = "^$"


def participant_user(namespace: str, service: str) -> str:
    return routes.address(namespace, service)


def user_definitions(
    namespace: str, services: Iterable[str], *, vhost: str = "/"
) -> dict[str, list[dict[str, object]]]:
    """``users``, ``permissions`` and ``topic_permissions`` for ``namespace``.

    Merge them into `definitions` for one file; ``rabbitmqctl import_definitions``
    and the management API's ``POST /api/definitions`` accept it.

    Raises:
        ValueError: If a service is named like a role (its user would be the role's).
    """
    named = sorted(set(services))
    clash = sorted(set(named) & set(ROLES))
    if clash:
        raise ValueError(
            f"a participant service cannot be named {', '.join(clash)}: "
            f"its RabbitMQ user would be the {clash[0]}'s"
        )
    ns = re.escape(routes.address(namespace, ""))
    exchanges = _one_of(ns, [*EXCHANGES, DEAD_EXCHANGE])
    events = exchange_name(namespace, "events")
    dead = exchange_name(namespace, DEAD_EXCHANGE)

    users = [_user(routes.address(namespace, role)) for role in ROLES]
    permissions = [
        _permission(
            routes.address(namespace, "coordinator"),
            vhost,
            configure=f"^{ns}.*",
            # amq.default: dead letters go back straight to their queue.
            write=f"^({ns}.*|amq\\.default)$",
            read=f"^{ns}.*",
        ),
        _permission(
            routes.address(namespace, "operator"),
            vhost,
            configure=exchanges,
            write=f"^{re.escape(events)}$",
            read=f"^{ns}.*\\.dead$",
        ),
    ]
    topic_permissions = [
        _topic(routes.address(namespace, "operator"), vhost, events, write="^control\\.")
    ]
    for service in named:
        user = participant_user(namespace, service)
        queue = routes.commands_queue(service)
        own = [queue, f"{queue}.dead"]
        users.append(_user(user))
        permissions.append(
            _permission(
                user,
                vhost,
                configure=_one_of(ns, [*EXCHANGES, DEAD_EXCHANGE, *own]),
                write=_one_of(ns, ["events", DEAD_EXCHANGE, *own]),
                read=_one_of(ns, ["commands", DEAD_EXCHANGE, queue]),
            )
        )
        topic_permissions.append(
            _topic(user, vhost, events, write=f"^reply\\.{re.escape(service)}\\.")
        )
        # The same key parks a message (write) and binds the dead-letter queue (read).
        only_own = f"^{re.escape(queue)}$"
        topic_permissions.append(_topic(user, vhost, dead, write=only_own, read=only_own))
    return {"users": users, "permissions": permissions, "topic_permissions": topic_permissions}


def _one_of(prefix: str, names: Iterable[str]) -> str:
    return f"^{prefix}({'|'.join(re.escape(n) for n in names)})$"


def _user(name: str) -> dict[str, object]:
    return {
        "name": name,
        "password_hash": "",
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": [],
        "limits": {},
    }


def _permission(
    user: str, vhost: str, *, configure: str, write: str, read: str
) -> dict[str, object]:
    return {"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read}


def _topic(
    user: str, vhost: str, exchange: str, *, write: str, read: str = _NOTHING
) -> dict[str, object]:
    return {"user": user, "vhost": vhost, "exchange": exchange, "write": write, "read": read}
