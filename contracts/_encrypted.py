"""Fields encrypted end to end: by the producer, for the participant; never read between.

A command field (or a saga data field the command is built from) typed
``Encrypted`` holds ciphertext made by the client that starts the saga, with a key
only the participants entitled to the value hold (``participants.EndToEndKeys``).
The coordinator stores and forwards it as the string it is: it has no key for it, so
it can neither read it nor branch on it (a ``when`` must use other fields).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = ["E2E_PREFIX", "Encrypted"]

E2E_PREFIX: Final = "e2e:v1:"

Encrypted = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^e2e:v1:[A-Za-z0-9._-]+:[A-Za-z0-9+/=]+$",
        description="Encrypted end to end (AES-256-GCM): e2e:v1:<key id>:<base64>",
        extra={"encrypted": True},
        # In the JSON Schema and the AsyncAPI document: other languages see it too.
        extra_json_schema={"x-encrypted": True},
    ),
]
"""A string of ciphertext ``e2e:v1:<key id>:<base64(nonce | ciphertext | tag)>``; a
clear value where one is expected fails the contract (``schema_mismatch``)."""
