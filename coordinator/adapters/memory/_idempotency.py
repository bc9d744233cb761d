"""In-memory idempotency store: a participant's recorded replies, in a dict."""

from __future__ import annotations

from typing import final

__all__ = ["MemoryIdempotencyStore"]


@final
class MemoryIdempotencyStore:
    """Implements ``IdempotencyStore``: the reply recorded under each idempotency key.

    A later ``put`` under the same key replaces the reply, as a Redis ``SET`` would.
    """

    def __init__(self) -> None:
        self._replies: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self._replies.get(key)

    async def put(self, key: str, reply: bytes) -> None:
        self._replies[key] = reply

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: object) -> bool:
        return key in self._replies
