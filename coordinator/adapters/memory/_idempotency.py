"""In-memory idempotency store: a participant's recorded replies, in a dict."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import final

__all__ = ["MemoryIdempotencyStore"]


@final
class MemoryIdempotencyStore:
    """Implements ``IdempotencyStore``: the reply recorded under each idempotency key.

    A later ``put`` under the same key replaces the reply, as a Redis ``SET`` would.
    """

    def __init__(self) -> None:
        self._replies: dict[str, bytes] = {}
        self._claims: dict[str, tuple[str, float]] = {}

    async def begin(self, key: str, holder: str, ttl: timedelta) -> bytes | bool:
        recorded = self._replies.get(key)
        if recorded is not None:
            return recorded
        current = self._claims.get(key)
        now = time.monotonic()
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._claims[key] = (holder, now + ttl.total_seconds())
        return True

    async def finish(self, key: str, holder: str, reply: bytes | None) -> None:
        if reply is not None:
            self._replies[key] = reply
        if self._claims.get(key, ("", 0.0))[0] == holder:
            del self._claims[key]

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: object) -> bool:
        return key in self._replies
