"""What the participants use (the reply store), the clock both sides share, and how
the in-memory harness sees a participant service."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Protocol, final

import msgspec

from coordinator.ports._messaging import Transport

__all__ = [
    "Clock",
    "IdempotencyStore",
    "ParticipantService",
    "RecordedReply",
    "Turn",
    "Worker",
]


class Turn(enum.Enum):
    """What ``IdempotencyStore.begin`` says when no reply is recorded for the key."""

    TAKEN = "taken"
    """The caller holds the key now (taken, or its hold renewed): run the handler."""
    HELD_ELSEWHERE = "held elsewhere"
    """Another holder has the key or, for a compensation, its action's key: ask again."""
    COMPENSATED = "compensated"
    """An action whose step's compensation has begun: refuse it, never run it."""


@final
class RecordedReply(msgspec.Struct, frozen=True):
    """The reply recorded for the key, as ``finish`` stored it: send it again, run nothing."""

    body: bytes


class IdempotencyStore(Protocol):
    """A participant's record of the replies it gave, by idempotency key.

    Each key is fenced across worker processes: a command redelivered to a
    second worker while the first still runs it waits for the first one's
    reply instead of running the handler again. Two calls per command.

    The two keys of one step, ``<saga>:<step>:action`` and
    ``<saga>:<step>:compensation``, are fenced against each other too, so that
    no action runs after its undo: once the compensation's key has been taken
    (a tombstone records it, for as long as replies are kept), ``begin`` of the
    action refuses it (``Turn.COMPENSATED``) unless the action's reply was
    recorded before; and the compensation waits (``Turn.HELD_ELSEWHERE``) while
    the action's key is held. Both checks are atomic with taking the key. Other
    keys are fenced alone.

    A reply can also be recorded for one command alone (its message id, one
    attempt of the key): a retryable failure, which the key's next attempt must
    not see, yet which a redelivery of that same command must get again rather
    than run the handler a second time and perhaps answer it differently. It
    sits beside the key's records and is kept as long.

    An outage of the backing server raises ``StoreUnavailableError``: the call
    may be made again, unchanged, once it is back.
    """

    async def begin(
        self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
    ) -> RecordedReply | Turn:
        """The reply recorded for the command ``command`` of ``key``, if given and
        recorded, or else for ``key``; else whose turn it is: ``Turn.TAKEN`` if
        ``holder`` now holds the key (run the handler; the hold expires after
        ``ttl``), ``Turn.HELD_ELSEWHERE`` if another does (or, for a
        compensation, its action is held), ``Turn.COMPENSATED`` for an action
        whose compensation has begun. The holder calls it again to renew its
        hold while the handler runs."""
        ...

    async def finish(
        self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
    ) -> None:
        """Record ``reply`` (None: nothing worth recording) and give the key back.

        With ``command``, ``reply`` is recorded for that command of ``key``
        alone: ``begin`` returns it for that command only."""


class Clock(Protocol):
    """Where "now" comes from, and how to wait: injected, so tests run on virtual time."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, delay: timedelta) -> None:
        """Wait ``delay`` of this clock's time."""


# -- participants, seen from the in-memory harness ------------------------------------


class Worker(Protocol):
    """Something that consumes until stopped: a participant's worker."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ParticipantService(Protocol):
    """A participant service the harness can run beside the coordinator.

    ``participants.Service`` is one. The coordinator side knows this protocol,
    never the SDK, so the two packages do not import each other.
    """

    @property
    def name(self) -> str: ...

    def worker(
        self, *, transport: Transport, idempotency: IdempotencyStore, clock: Clock
    ) -> Worker:
        """A worker that handles this service's commands on ``transport``."""
        ...
