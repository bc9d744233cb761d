"""Sensitive saga data as the API, the dashboard and ``saga show`` present it.

Sealed values (``coordinator._sealing``) are shown as ``•••``, unless the caller may
read payloads (a token entry with ``"payloads": true``) and this process holds the
keys (``SAGA_DATA_KEYS``): then they are opened, and each such read is written to
the ``coordinator.audit`` log (who, which saga, what). The audit is a log line and
not a history entry: the API and the dashboard are meant to run with a read-only
Redis user, and a read must not become a write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, final

import msgspec

from coordinator._sealing import PREFIX, Keyring, Sealer, redact
from coordinator.core import SagaState
from coordinator.ports import HistoryEntry

__all__ = ["Payloads"]

_audit = logging.getLogger("coordinator.audit")
_MARK = PREFIX.encode()


@final
class Payloads:
    """Redacts or, for callers allowed and with the keys here, opens sealed values."""

    def __init__(self, keyring: Keyring | None) -> None:
        self._sealer = Sealer(keyring, {})

    @property
    def can_open(self) -> bool:
        return self._sealer.keyring is not None

    def state(self, state: SagaState[Any], *, who: str, reveal: bool) -> SagaState[Any]:
        """``state`` with its sealed values opened (``reveal`` and the keys here) or
        redacted (otherwise).

        Raises:
            SealedDataError: a value does not open (altered, or a key not listed here).
        """
        raw = msgspec.json.encode(state)
        if _MARK not in raw:
            return state
        if reveal and self.can_open:
            _audit.info("payloads of saga %s revealed to %s", state.saga_id, who)
            opened = self._sealer.open_state(raw)
            return msgspec.json.decode(opened, type=SagaState[Any])
        shown = redact(msgspec.json.decode(raw))
        return msgspec.convert(shown, SagaState[Any])

    def history(
        self, saga_id: str, entries: Sequence[HistoryEntry], *, who: str, reveal: bool
    ) -> list[HistoryEntry]:
        """``entries`` opened or redacted, as :meth:`state`."""
        if not any(_MARK in bytes(e.input) or _MARK in bytes(e.effects) for e in entries):
            return list(entries)
        if reveal and self.can_open:
            _audit.info("payloads of saga %s (history) revealed to %s", saga_id, who)
            return [self._sealer.open_entry(e, saga_id) for e in entries]
        return [_redacted(e) for e in entries]


def _redacted(entry: HistoryEntry) -> HistoryEntry:
    return msgspec.structs.replace(
        entry,
        input=msgspec.Raw(msgspec.json.encode(redact(msgspec.json.decode(entry.input)))),
        effects=msgspec.Raw(msgspec.json.encode(redact(msgspec.json.decode(entry.effects)))),
    )
