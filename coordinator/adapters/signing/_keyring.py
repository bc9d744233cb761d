"""The signing keys a process holds: which sign, which are accepted, by key id.

A key id is ``{principal}:{label}``: the principal is a participant service,
``operator`` (control messages from the CLI and the API) or ``coordinator``
(lifecycle events); the label tells a principal's keys apart during a
rotation, e.g. ``payments:2026-12``. Keys come from ``SAGA_SIGNING_KEYS``,
never from the code, in one of two forms:

- JSON: ``{"keys": {"payments:2026-12": "<secret>"}, "active": [...], "accepted": [...]}``
- a directory: one file per key, named by its id, holding its secret; optional
  files ``active`` and ``accepted`` list key ids, one a line.

``active`` (default: every key) sign; ``accepted`` (default: every key) verify.
A rotation therefore needs no step where anything is lost: add the new key
everywhere (messages now carry both signatures, each side checks the one it
knows), then drop the old one from ``active``, and remove it once no message
signed only with it can still be in a queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

__all__ = ["COORDINATOR", "MIN_SECRET", "OPERATOR", "Keyring", "KeyringError", "principal_of"]

OPERATOR: Final = "operator"
COORDINATOR: Final = "coordinator"
MIN_SECRET: Final = 32
"""Bytes; an HMAC-SHA256 key shorter than the hash is weaker than it."""

_KID: Final = re.compile(r"[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+")
_VAR: Final = "SAGA_SIGNING_KEYS"


class KeyringError(ValueError):
    """The keys cannot be used; the message says which and how to fix it (never a secret)."""


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    keys: dict[str, str]
    active: list[str] | None = None
    accepted: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Keyring:
    """Secrets by key id, and which of them sign and verify."""

    secrets: Mapping[str, bytes] = field(repr=False)  # never in a log line
    active: frozenset[str]
    accepted: frozenset[str]

    @classmethod
    def of(
        cls,
        secrets: Mapping[str, bytes | str],
        *,
        active: Iterable[str] | None = None,
        accepted: Iterable[str] | None = None,
    ) -> Keyring:
        """A checked keyring.

        Raises:
            KeyringError: A malformed key id, a secret under 32 bytes, or an
                ``active``/``accepted`` id with no secret.
        """
        if not secrets:
            raise KeyringError(f"{_VAR} holds no key: give at least one, or unset it")
        raw = {kid: s.encode() if isinstance(s, str) else bytes(s) for kid, s in secrets.items()}
        for kid, secret in raw.items():
            if not _KID.fullmatch(kid):
                raise KeyringError(
                    f"{_VAR}: key id {kid!r} is not {{principal}}:{{label}} "
                    "(letters, digits, '_', '-'; the label may have '.'), e.g. payments:2026-12"
                )
            if len(secret) < MIN_SECRET:
                raise KeyringError(
                    f"{_VAR}: the secret of {kid!r} has {len(secret)} bytes, at least "
                    f"{MIN_SECRET} are needed: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))' makes one"
                )
        chosen = {}
        for name, ids in (("active", active), ("accepted", accepted)):
            listed = frozenset(raw if ids is None else ids)
            unknown = sorted(listed - raw.keys())
            if unknown:
                raise KeyringError(
                    f"{_VAR}: {name} names {', '.join(unknown)}, which has no secret: "
                    "add its secret or take it out"
                )
            chosen[name] = listed
        return cls(raw, chosen["active"], chosen["accepted"])

    @classmethod
    def load(cls, value: str) -> Keyring:
        """The keyring ``SAGA_SIGNING_KEYS`` holds: a JSON object, or a directory's path.

        Raises:
            KeyringError: It cannot be read, or its keys cannot be used.
        """
        text = value.strip()
        if text.startswith("{"):
            try:
                doc = msgspec.json.decode(text, type=_Document)
            except msgspec.DecodeError as exc:
                raise KeyringError(
                    f'{_VAR} is not {{"keys": {{kid: secret}}, "active": [...], '
                    f'"accepted": [...]}}: {exc}'
                ) from None
            return cls.of(doc.keys, active=doc.active, accepted=doc.accepted)
        return cls._from_directory(Path(text))

    @classmethod
    def _from_directory(cls, path: Path) -> Keyring:
        if not path.is_dir():
            raise KeyringError(
                f"{_VAR}={str(path)!r} is neither a JSON object nor a directory of key files"
            )
        secrets: dict[str, bytes] = {}
        lists: dict[str, list[str] | None] = {"active": None, "accepted": None}
        try:
            for file in sorted(path.iterdir()):
                if file.name.startswith(".") or not file.is_file():
                    continue  # e.g. the ..data links of a Kubernetes secret volume
                if file.name in lists:
                    lists[file.name] = file.read_text().split()
                else:
                    secrets[file.name] = file.read_bytes().strip()
        except OSError as exc:
            raise KeyringError(f"{_VAR}: cannot read {path}: {exc.strerror}") from None
        return cls.of(secrets, active=lists["active"], accepted=lists["accepted"])


def principal_of(kid: str) -> str:
    """``payments`` of ``payments:2026-12``."""
    return kid.partition(":")[0]
