"""The ``DeadLetters`` port over the in-memory transport's dead letters."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import cast, final

from contracts import routes
from coordinator.adapters.memory._queues import Published
from coordinator.adapters.memory._transport import MemoryTransport
from coordinator.ports import DeadLetter, Exchange, Resign

__all__ = ["MemoryDeadLetters"]


@final
class MemoryDeadLetters:
    """Implements the ``DeadLetters`` port on a `MemoryTransport`.

    It reads and changes ``transport.dead_letters``, the list tests assert on.
    """

    def __init__(self, transport: MemoryTransport, *, resign: Resign | None = None) -> None:
        """Dead letters of ``transport``; ``resign`` signs those moved back."""
        self._transport = transport
        self._resign = resign

    async def list(
        self, queue: str, limit: int = 100, *, remove: bool = False
    ) -> Sequence[DeadLetter]:
        letters = self._of(queue, None, limit)
        if remove:
            self._take(letters)
        return letters

    async def redrive(
        self, queue: str, message_ids: Collection[str] | None = None, *, limit: int = 100
    ) -> Sequence[DeadLetter]:
        letters = self._of(queue, message_ids, limit)
        self._take(letters)
        for letter in letters:
            headers: Mapping[str, str] = {
                k: v for k, v in letter.headers.items() if k not in routes.DEAD_LETTER_HEADERS
            }
            if self._resign is not None:
                headers = self._resign(
                    letter.exchange, letter.routing_key, letter.body, letter.message_id, headers
                )
            published = Published(
                # Only a published message is ever parked, so this is one of the three.
                exchange=cast(Exchange, letter.exchange),
                routing_key=letter.routing_key,
                body=letter.body,
                message_id=letter.message_id,
                headers=MappingProxyType(dict(headers)),
                # Moved by this connection, under its name, as on RabbitMQ.
                user_id=self._transport.user,
            )
            self._transport._put_back(queue, published)
        return letters

    async def purge(self, queue: str) -> int:
        letters = self._of(queue, None, len(self._transport.dead_letters))
        self._take(letters)
        return len(letters)

    async def exists(self, queue: str) -> bool:
        return queue in self._transport._queues

    def _of(
        self, queue: str, message_ids: Collection[str] | None, limit: int
    ) -> Sequence[DeadLetter]:
        chosen = [
            letter
            for letter in self._transport.dead_letters
            if letter.queue == queue and (message_ids is None or letter.message_id in message_ids)
        ]
        return chosen[:limit]

    def _take(self, letters: Sequence[DeadLetter]) -> None:
        # By identity: two dead letters of one message may be equal.
        taken = {id(letter) for letter in letters}
        self._transport.dead_letters[:] = [
            d for d in self._transport.dead_letters if id(d) not in taken
        ]
