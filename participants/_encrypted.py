"""End-to-end encryption of command fields (``contracts.Encrypted``): the producer
encrypts, the participant decrypts, with keys the coordinator does not hold."""

from __future__ import annotations

from typing import final

from contracts._encrypted import E2E_PREFIX
from coordinator._sealing import Keyring

__all__ = ["EndToEndKeys"]


@final
class EndToEndKeys:
    """A keyring for ``Encrypted`` fields: the first key encrypts, every key decrypts.

    ``context`` is authenticated with the value (AES-GCM additional data): the
    producer and the participant agree on it, e.g. ``"Charge.card"``, so a
    ciphertext copied into another field does not decrypt.

    Example::

        keys = EndToEndKeys.parse(os.environ["PAYMENTS_E2E_KEYS"])  # "kid:base64,..."
        card = keys.encrypt("4111 1111 1111 1111", context="Charge.card")   # client side
        keys.decrypt(cmd.card, context="Charge.card")                      # participant

    Raises:
        SettingsError: a malformed or short key (``parse``).
        SealedDataError: a value that does not decrypt (``decrypt``).
    """

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    @classmethod
    def parse(cls, text: str, *, setting: str = "end-to-end keys") -> EndToEndKeys:
        """``KID:BASE64KEY`` entries (32 random bytes each), comma- or line-separated."""
        return cls(Keyring.parse(text, prefix=E2E_PREFIX, setting=setting))

    def encrypt(self, value: str, *, context: str) -> str:
        return self._keyring.seal(value.encode(), context.encode())

    def decrypt(self, value: str, *, context: str) -> str:
        return self._keyring.open(value, context.encode()).decode()
