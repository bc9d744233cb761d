"""Signed messages: HMAC-SHA256 over the body and the headers that route it.

`SigningTransport` wraps any ``Transport``: it signs what is published and
verifies each delivery before the handler sees it, dead-lettering what fails
(``missing_signature``, ``unknown_key``, ``bad_signature``,
``future_timestamp``, ``stale``). `Keyring` holds the keys, read from
``SAGA_SIGNING_KEYS``; `may_publish` says which principal's key may sign which
routing key; `signed_bytes` is the canonical form every implementation must
reproduce.
"""

from contracts._public import show_as_public
from coordinator.adapters.signing._canonical import (
    CONTENT_TYPE,
    SIG_HEADER,
    SIG_TS_HEADER,
    may_publish,
    signed_bytes,
)
from coordinator.adapters.signing._keyring import COORDINATOR, OPERATOR, Keyring, KeyringError
from coordinator.adapters.signing._transport import FUTURE_TOLERANCE, SigningTransport

__all__ = [
    "CONTENT_TYPE",
    "COORDINATOR",
    "FUTURE_TOLERANCE",
    "Keyring",
    "KeyringError",
    "OPERATOR",
    "SIG_HEADER",
    "SIG_TS_HEADER",
    "SigningTransport",
    "may_publish",
    "signed_bytes",
]

show_as_public(__name__, globals(), __all__)
