"""In-memory idempotency store: a participant's recorded replies, in a dict."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import final

from coordinator.ports import RecordedReply, Turn

__all__ = ["MemoryIdempotencyStore"]

_OTHER = {"action": "compensation", "compensation": "action"}


@final
class MemoryIdempotencyStore:
    """Implements ``IdempotencyStore``: the reply recorded under each idempotency key.

    A later ``finish`` under the same key replaces the reply, as a Redis ``SET`` would.
    Tombstones, and the replies recorded for one command, are kept for as long
    as the store lives.
    """

    def __init__(self) -> None:
        self._replies: dict[str, bytes] = {}
        self._command_replies: dict[tuple[str, str], bytes] = {}
        self._claims: dict[str, tuple[str, float]] = {}
        self._tombstones: set[str] = set()

    async def begin(
        self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
    ) -> RecordedReply | Turn:
        # The command's own answer comes first: it was given to that command.
        recorded = self._command_replies.get((key, command)) if command is not None else None
        if recorded is None:
            recorded = self._replies.get(key)
        if recorded is not None:
            return RecordedReply(recorded)
        now = time.monotonic()
        step, _, kind = key.rpartition(":")
        paired = bool(step) and kind in _OTHER
        if paired and kind == "action" and step in self._tombstones:
            return Turn.COMPENSATED
        if paired and kind == "compensation" and self._held(f"{step}:action", now) is not None:
            return Turn.HELD_ELSEWHERE
        current = self._held(key, now)
        if current is not None and current != holder:
            return Turn.HELD_ELSEWHERE
        self._claims[key] = (holder, now + ttl.total_seconds())
        if paired and kind == "compensation":
            self._tombstones.add(step)
        return Turn.TAKEN

    async def finish(
        self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
    ) -> None:
        if reply is not None and command is not None:
            self._command_replies[key, command] = reply
        elif reply is not None:
            self._replies[key] = reply
        if self._claims.get(key, ("", 0.0))[0] == holder:
            del self._claims[key]

    def _held(self, key: str, now: float) -> str | None:
        current = self._claims.get(key)
        return current[0] if current is not None and current[1] > now else None

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: object) -> bool:
        return key in self._replies
