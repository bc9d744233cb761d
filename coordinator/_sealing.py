"""Sensitive saga data, sealed with AES-256-GCM before it reaches the store.

A sealed value is the string ``enc:v1:<key id>:<base64(nonce | ciphertext | tag)>``
in place of the clear value: the JSON of the value, encrypted under the keyring's
active key with a random 96-bit nonce. The additional data binds it to its saga
and its place (``<saga id>|data.<field>``), so a ciphertext copied into another
saga or another field does not open. Any key of the keyring opens what it sealed:
rotating is putting a new key first and keeping the old ones listed until every
saga sealed with them has ended (or been rewritten by a later transition).

Sealing needs the definition (which fields are sensitive); opening does not: any
string of the form above, where a sealed value may be, is opened. So ``saga show
--reveal``, the API and the dashboard open states without loading the saga modules.

What is sealed, for a saga whose definition marks fields sensitive:

- the state's ``data`` fields, and in the signals and the inputs held while paused
  the keys of the same names;
- in the history, the start input's data fields, reply results' and signals' keys
  of those names, and each command's whole payload (a step's builder may copy a
  value under another name);
- the whole body of each outbox entry (commands carry the clear value: the
  participant needs it; the lifecycle events carry the sealed one).

Why in the runtime, before the store, and not in the store: the two stores (Redis
and memory) then hold the same bytes and pass the same tests without each knowing
about keys, the core stays pure (it works on clear data in memory), and readers
that hold no key (API, dashboard, CLI) see sealed values they redact.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coordinator._errors import SealedDataError, SettingsError
from coordinator.ports import HistoryEntry, OutboxEntry

__all__ = ["PREFIX", "REDACTED", "Keyring", "Sealer", "is_sealed", "redact"]

PREFIX: Final = "enc:v1:"
REDACTED: Final = "•••"
_BODY_PREFIX: Final = PREFIX.encode()
_NONCE = 12
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@final
class Keyring:
    """Named 256-bit keys: the active one seals, every one opens.

    Raises:
        SettingsError: a key id that is not ``[A-Za-z0-9._-]``, a key that is not 32
            bytes, or no key.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active: str,
        *,
        prefix: str = PREFIX,
        setting: str = "SAGA_DATA_KEYS",
    ) -> None:
        if not keys:
            raise SettingsError(f"{setting}: no key given; write KID:BASE64KEY[,KID:...]")
        for kid, key in keys.items():
            if not _KID.match(kid):
                raise SettingsError(f"{setting}: key id {kid!r}: use letters, digits, . _ -")
            if len(key) != 32:
                raise SettingsError(
                    f"{setting}: key {kid!r} is {len(key)} bytes, AES-256 needs 32; "
                    "make one with: python -c 'import os,base64;"
                    "print(base64.b64encode(os.urandom(32)).decode())'"
                )
        if active not in keys:
            raise SettingsError(f"{setting}: the active key {active!r} is not listed")
        self.active = active
        self.prefix = prefix
        self.setting = setting
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._aead)

    @classmethod
    def parse(cls, text: str, *, prefix: str = PREFIX, setting: str = "SAGA_DATA_KEYS") -> Keyring:
        """``KID:BASE64KEY`` entries separated by commas or lines; the first is active.

        Raises:
            SettingsError: as the constructor, or an entry not ``KID:BASE64KEY``.
        """
        keys: dict[str, bytes] = {}
        for raw in re.split(r"[,\n]", text):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep:
                raise SettingsError(
                    f"{setting}: an entry is KID:BASE64KEY, got one without ':' "
                    f"(key id {kid[:8]!r}...)"
                )
            try:
                keys[kid.strip()] = base64.b64decode(encoded.strip(), altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                raise SettingsError(
                    f"{setting}: key {kid.strip()!r} is not base64 (32 random bytes)"
                ) from None
        return cls(keys, next(iter(keys), ""), prefix=prefix, setting=setting)

    @classmethod
    def configured(cls, keys: str = "", keys_file: str = "") -> Keyring | None:
        """The keyring of ``SAGA_DATA_KEYS`` or, read here, ``SAGA_DATA_KEYS_FILE``; None
        when neither is set."""
        if keys and keys_file:
            raise SettingsError("set SAGA_DATA_KEYS or SAGA_DATA_KEYS_FILE, not both")
        if keys_file:
            try:
                keys = Path(keys_file).read_text()
            except OSError as exc:
                raise SettingsError(
                    f"SAGA_DATA_KEYS_FILE={keys_file!r}: {exc.strerror or exc}"
                ) from None
            if not keys.strip():
                raise SettingsError(f"SAGA_DATA_KEYS_FILE={keys_file!r}: the file has no key")
        return cls.parse(keys) if keys.strip() else None

    def seal(self, plain: bytes, aad: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead[self.active].encrypt(nonce, plain, aad)
        return f"{self.prefix}{self.active}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, aad: bytes) -> bytes:
        """The clear bytes of ``sealed``.

        Raises:
            SealedDataError: an unknown key id, a malformed value, or one that does not
                authenticate (altered, or moved from another saga or field).
        """
        if not sealed.startswith(self.prefix):
            raise SealedDataError(
                f"not a sealed value (expected {self.prefix}KID:...)",
                what=aad.decode(errors="replace"),
            )
        kid, _, encoded = sealed.removeprefix(self.prefix).partition(":")
        aead = self._aead.get(kid)
        if aead is None:
            raise SealedDataError(
                f"sealed with key {kid!r}, which is not in {self.setting} "
                f"(listed: {', '.join(self._aead)})",
                what=aad.decode(errors="replace"),
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise SealedDataError(
                f"does not authenticate under key {kid!r}: altered, or not sealed for this place",
                what=aad.decode(errors="replace"),
            ) from None


def _aad(saga_id: str, place: str) -> bytes:
    return f"{saga_id}|{place}".encode()


@final
class Sealer:
    """Seals the sensitive values of the sagas it knows; opens any sealed value.

    Args:
        keyring: The keys; None opens nothing (and seals nothing: ``sensitive`` must
            then be empty, the coordinator checks it at start).
        sensitive: The sensitive fields of each definition, by ``(name, version)``.
    """

    def __init__(
        self, keyring: Keyring | None, sensitive: Mapping[tuple[str, int], frozenset[str]]
    ) -> None:
        self.keyring = keyring
        self._sensitive = {k: v for k, v in sensitive.items() if v}

    def fields(self, name: str, version: int) -> frozenset[str]:
        return self._sensitive.get((name, version), frozenset())

    # -- sealing (the coordinator, on the way to the store) -----------------------------

    def seal_state(self, state: bytes, saga_id: str, name: str, version: int) -> bytes:
        fields = self.fields(name, version)
        if not fields:
            return state
        doc = msgspec.json.decode(state)
        self._seal_keys(doc.get("data"), saga_id, fields)
        for data in (doc.get("signals") or {}).values():
            self._seal_keys(data, saga_id, fields)
        for held in doc.get("held") or ():
            self._seal_input(held, saga_id, fields)
        return msgspec.json.encode(doc)

    def sealed_data(self, data: Any, saga_id: str, name: str, version: int) -> Any:
        """``data`` (builtins) with its sensitive fields sealed: for lifecycle events."""
        fields = self.fields(name, version)
        if fields and isinstance(data, dict):
            data = dict(data)
            self._seal_keys(data, saga_id, fields)
        return data

    def seal_entry(
        self, entry: HistoryEntry, saga_id: str, name: str, version: int
    ) -> HistoryEntry:
        fields = self.fields(name, version)
        if not fields:
            return entry
        inp = msgspec.json.decode(entry.input)
        self._seal_input(inp, saga_id, fields)
        effects = msgspec.json.decode(entry.effects)
        for effect in effects:
            if isinstance(effect, dict) and effect.get("type") == "Dispatch":
                place = f"payload.{effect.get('message_id', '')}"
                effect["payload"] = self._seal(effect.get("payload"), saga_id, place)
        return msgspec.structs.replace(
            entry,
            input=msgspec.Raw(msgspec.json.encode(inp)),
            effects=msgspec.Raw(msgspec.json.encode(effects)),
        )

    def seal_outbox(self, entry: OutboxEntry, name: str, version: int) -> OutboxEntry:
        if not self.fields(name, version):
            return entry
        place = f"outbox.{entry.message_id}"
        sealed = self._keys(place).seal(entry.body, _aad(entry.saga_id, place))
        return msgspec.structs.replace(entry, body=sealed.encode())

    def _seal(self, value: Any, saga_id: str, place: str) -> Any:
        # A value that merely looks sealed (a client sent "enc:v1:...") is sealed too:
        # opening gives it back as it came, and nothing unsealed is stored.
        if value is None:
            return value
        return self._keys(place).seal(msgspec.json.encode(value), _aad(saga_id, place))

    def _seal_keys(self, data: Any, saga_id: str, fields: frozenset[str]) -> None:
        if isinstance(data, dict):
            for field in fields & data.keys():
                data[field] = self._seal(data[field], saga_id, f"data.{field}")

    def _seal_input(self, inp: Any, saga_id: str, fields: frozenset[str]) -> None:
        if not isinstance(inp, dict):
            return
        kind = inp.get("type")
        if kind in ("Start", "SignalReceived"):
            self._seal_keys(inp.get("data"), saga_id, fields)
        elif kind == "StepCompleted":
            self._seal_keys(inp.get("result"), saga_id, fields)

    # -- opening (the coordinator on load; readers allowed to see payloads) -------------

    def open_state(self, state: bytes) -> bytes:
        if PREFIX.encode() not in state:
            return state
        doc = msgspec.json.decode(state)
        saga_id = doc.get("saga_id", "")
        self._open_keys(doc.get("data"), saga_id)
        for data in (doc.get("signals") or {}).values():
            self._open_keys(data, saga_id)
        for held in doc.get("held") or ():
            self._open_input(held, saga_id)
        return msgspec.json.encode(doc)

    def open_entry(self, entry: HistoryEntry, saga_id: str) -> HistoryEntry:
        if PREFIX.encode() not in bytes(entry.input) + bytes(entry.effects):
            return entry
        inp = msgspec.json.decode(entry.input)
        self._open_input(inp, saga_id)
        effects = msgspec.json.decode(entry.effects)
        for effect in effects:
            if isinstance(effect, dict) and is_sealed(effect.get("payload")):
                place = f"payload.{effect.get('message_id', '')}"
                effect["payload"] = self._open(effect["payload"], saga_id, place)
        return msgspec.structs.replace(
            entry,
            input=msgspec.Raw(msgspec.json.encode(inp)),
            effects=msgspec.Raw(msgspec.json.encode(effects)),
        )

    def open_outbox(self, entry: OutboxEntry) -> OutboxEntry:
        if not entry.body.startswith(_BODY_PREFIX):
            return entry
        place = f"outbox.{entry.message_id}"
        return msgspec.structs.replace(
            entry, body=self._keys(place).open(entry.body.decode(), _aad(entry.saga_id, place))
        )

    def _keys(self, place: str) -> Keyring:
        if self.keyring is None:
            raise SealedDataError(
                "sealed, and no key is configured: set SAGA_DATA_KEYS", what=place
            )
        return self.keyring

    def _open(self, value: Any, saga_id: str, place: str) -> Any:
        if not is_sealed(value):
            return value
        return msgspec.json.decode(self._keys(place).open(value, _aad(saga_id, place)))

    def _open_keys(self, data: Any, saga_id: str) -> None:
        if isinstance(data, dict):
            for field, value in data.items():
                if is_sealed(value):
                    data[field] = self._open(value, saga_id, f"data.{field}")

    def _open_input(self, inp: Any, saga_id: str) -> None:
        if isinstance(inp, dict):
            self._open_keys(inp.get("data"), saga_id)
            self._open_keys(inp.get("result"), saga_id)


def redact(value: Any) -> Any:
    """``value`` (builtins) with every sealed string replaced by ``•••``."""
    if is_sealed(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
