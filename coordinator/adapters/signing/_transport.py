"""A ``Transport`` that signs what it publishes and verifies what it delivers.

It wraps the real transport (RabbitMQ, or memory in tests and the demo), so
both get the same checks. A delivery is verified before its handler runs, and
so before its body is decoded; RabbitMQ's consumer has refused an oversized
body already. What fails is dead-lettered on its first delivery with the
reason, and the handler never sees it: nothing it says changes a saga.

Freshness: a timestamp more than `FUTURE_TOLERANCE` ahead is refused
(``future_timestamp``); an old one only beyond ``max_age``, the time the
receiver remembers message ids (``stale``). Queues hold good messages for
hours during an outage or before a redrive, so a webhook-style five-minute
window would throw replies away; a replay within ``max_age`` is a duplicate,
which the receiver's dedupe by message id turns into a no-op.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final, final

from coordinator._errors import SettingsError
from coordinator.adapters.signing._canonical import (
    SIG_HEADER,
    SIG_TS_HEADER,
    may_publish,
    signed_bytes,
)
from coordinator.adapters.signing._keyring import Keyring, principal_of
from coordinator.ports import Delivery, Exchange, Handler, Subscription, Transport

__all__ = ["FUTURE_TOLERANCE", "SigningTransport"]

FUTURE_TOLERANCE: Final = timedelta(minutes=5)
"""How far ahead of the receiver's clock a signature may be dated (clock skew)."""

_VERSION: Final = "v1"


def _mac(secret: bytes, data: bytes) -> str:
    # hmac.digest: the one-shot C path, several times faster than hmac.new.
    return base64.b64encode(hmac.digest(secret, data, "sha256")).decode()


@final
class SigningTransport:
    """Implements the ``Transport`` port over ``inner``, with signatures.

    Example:
        keys = Keyring.load(os.environ["SAGA_SIGNING_KEYS"])
        transport = SigningTransport(await RabbitTransport.connect(url), keys,
                                     max_age=timedelta(days=7))
    """

    def __init__(
        self,
        inner: Transport,
        keyring: Keyring,
        *,
        max_age: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Sign with ``keyring``'s active keys, verify with its accepted ones.

        Args:
            inner: The transport that carries the messages.
            keyring: The keys this process holds.
            max_age: The oldest signature accepted: no longer than the receiver
                remembers message ids (the coordinator's ``retention``, a
                participant's ``idempotency_ttl``).
            clock: Unix seconds, for the timestamps (tests move it).
        """
        self.inner = inner
        self.keyring = keyring
        self._max_age = max_age.total_seconds()
        self._clock = clock

    # -- publishing --------------------------------------------------------------------

    def sign(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """``headers`` with a fresh signature by every active key allowed to send it.

        Also re-signs a dead letter moved back (the coordinator is the trust
        root): any signature it had is replaced.

        Raises:
            SettingsError: No active key of this process may publish ``routing_key``.
        """
        kids = [
            kid
            for kid in sorted(self.keyring.active)
            if may_publish(principal_of(kid), exchange, routing_key)
        ]
        if not kids:
            raise SettingsError(
                f"no active key in SAGA_SIGNING_KEYS may sign {routing_key!r} on {exchange!r}: "
                "add the key of the principal that sends it"
            )
        ts = int(self._clock())
        secrets = self.keyring.secrets
        entries = [
            f"{_VERSION},{kid},"
            + _mac(secrets[kid], signed_bytes(kid, message_id, ts, exchange, routing_key, body))
            for kid in kids
        ]
        return {**(headers or {}), SIG_TS_HEADER: str(ts), SIG_HEADER: " ".join(entries)}

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
        signed = self.sign(exchange, routing_key, body, message_id, headers)
        await self.inner.publish(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers=signed,
            mandatory=mandatory,
            user_id=user_id,
        )

    @property
    def user(self) -> str:
        return self.inner.user

    # -- consuming ---------------------------------------------------------------------

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        await self.inner.declare(queue, exchange, pattern)

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        async def verified(delivery: Delivery) -> None:
            refusal = self.refusal(delivery)
            if refusal is None:
                await handler(delivery)
            else:
                await delivery.dead_letter(*refusal)

        return await self.inner.subscribe(queue, exchange, pattern, verified, prefetch=prefetch)

    def refusal(self, delivery: Delivery) -> tuple[str, str] | None:
        """Why ``delivery`` is not authentic, as ``(reason, detail)``; None when it is."""
        header = delivery.headers.get(SIG_HEADER)
        stamp = delivery.headers.get(SIG_TS_HEADER)
        if not header or stamp is None:
            return "missing_signature", f"no {SIG_HEADER} and {SIG_TS_HEADER} headers"
        try:
            ts = int(stamp)
        except ValueError:
            return "bad_signature", f"{SIG_TS_HEADER} {stamp[:40]!r} is not Unix seconds"
        exchange, key = delivery.exchange, delivery.routing_key
        known: list[tuple[str, str]] = []
        for entry in header.split():
            version, _, rest = entry.partition(",")
            kid, _, mac = rest.partition(",")
            if version == _VERSION and kid in self.keyring.accepted:
                known.append((kid, mac))
        if not known:
            kids = [e.split(",")[1] for e in header.split() if e.count(",") == 2]
            return "unknown_key", f"signed by {', '.join(kids)[:200] or 'nothing readable'}"
        allowed = [
            (kid, mac) for kid, mac in known if may_publish(principal_of(kid), exchange, key)
        ]
        if not allowed:
            signers = ", ".join(kid for kid, _ in known)
            return "bad_signature", f"key {signers} may not sign {key!r} on {exchange!r}"
        body, message_id = delivery.body, delivery.message_id
        secrets = self.keyring.secrets
        if not any(
            hmac.compare_digest(
                mac.encode(),
                _mac(secrets[kid], signed_bytes(kid, message_id, ts, exchange, key, body)).encode(),
            )
            for kid, mac in allowed
        ):
            return "bad_signature", f"the signature does not match the message ({key!r})"
        now = self._clock()
        if ts > now + FUTURE_TOLERANCE.total_seconds():
            return "future_timestamp", f"signed at {ts}, {ts - now:.0f} s ahead of this clock"
        if ts < now - self._max_age:
            return "stale", f"signed at {ts}, older than {self._max_age:.0f} s"
        return None
