"""The bytes a signature covers, and who may sign which routing key.

Signed: ``b"saga-sig/v1\\n" + JSON([kid, message_id, ts, exchange, routing_key,
content_type]) + b"\\n" + body``. A JSON array rather than dot-joined fields, so
no field can borrow characters from its neighbour (routing keys, ids and kids
may all contain dots); ``msgspec.json`` writes it compactly and the same way
every time. It covers the routing (a valid reply cannot be re-routed to another
meaning) but not the whole header table: the broker adds ``x-death`` and
``x-delivery-count``, and tracing rewrites ``traceparent`` on the way.
"""

from __future__ import annotations

from typing import Final

import msgspec

from contracts import routes
from coordinator.adapters.signing._keyring import COORDINATOR, OPERATOR

__all__ = ["CONTENT_TYPE", "SIG_HEADER", "SIG_TS_HEADER", "may_publish", "signed_bytes"]

SIG_HEADER: Final = routes.SIG_HEADER
SIG_TS_HEADER: Final = routes.SIG_TS_HEADER
CONTENT_TYPE: Final = "application/json"
"""Every message's content type: the RabbitMQ transport sets no other."""

_PREFIX: Final = b"saga-sig/v1\n"
_encode = msgspec.json.Encoder().encode


def signed_bytes(
    kid: str, message_id: str, ts: int, exchange: str, routing_key: str, body: bytes
) -> bytes:
    """What the HMAC of key ``kid`` is computed over; ``exchange`` without the namespace."""
    head = _encode([kid, message_id, ts, exchange, routing_key, CONTENT_TYPE])
    return b"".join((_PREFIX, head, b"\n", body))


def may_publish(principal: str, exchange: str, routing_key: str) -> bool:
    """Whether a key of ``principal`` may sign a message to ``exchange`` by ``routing_key``.

    - ``commands``, ``{service}.{Command}``: the key of ``service``. The
      coordinator holds it and signs its commands to that service with it; a
      symmetric key cannot tell which of the two ends signed, and the service
      could at most command itself.
    - ``events``, ``reply.{service}.…``: only ``service``.
    - ``events``, ``control.…``: only ``operator`` or ``coordinator``.
    - ``lifecycle``: only ``coordinator``.
    - The keys before issue 16, accepted for one release: ``{saga}.StartSaga``,
      ``signal.Signal``, ``cancel.CancelSaga``… as control messages;
      ``{saga}.TaskCompleted|TaskFailed`` from any service, since they do not
      name it (the coordinator's sender check then does).
    """
    staff = principal in (OPERATOR, COORDINATOR)
    if exchange == "commands":
        words = routing_key.split(".")
        return len(words) == 2 and words[0] == principal
    if exchange == "lifecycle":
        return principal == COORDINATOR
    if exchange != "events":
        return False
    # What the key means is read where the coordinator reads it, so the two agree.
    route = routes.events_route(routing_key)
    if route is None:
        return False
    if route.control:
        return staff
    return not staff if route.legacy else route.service == principal
