"""Circuit breaker ports: the state every replica shares, and its policy."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

import msgspec

__all__ = [
    "BreakerEvent",
    "BreakerOp",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
]

BreakerState = Literal["closed", "open", "half-open"]

BreakerOp = Literal["refresh", "failure", "success", "probe", "open", "close", "reset"]
"""What ``BreakerStore.apply`` does, atomically, on one service's shared breaker:

* ``refresh``: nothing but the automatic move from open to half-open once
  ``reset_timeout`` has passed (every op does that first);
* ``failure``: counts a failure when closed (opens it at ``fail_max``), reopens it
  when half-open; ignored while open (a late reply to a command sent before);
* ``success``: resets the count when closed, counts toward closing when half-open;
* ``probe``: takes one of the half-open breaker's probes, if any is left;
* ``open``: an operator opens it and holds it open (no half-open) until
  ``close`` or ``reset``;
* ``close``: an operator closes it (counts reset);
* ``reset``: an operator hands it back to the automatic rules: counts reset, the
  hold released (a held breaker stays open and half-opens after ``reset_timeout``).
"""


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The thresholds of one service's breaker (``coordinator.Breaker`` resolved).

    Attributes:
        fail_max: Consecutive failures that open it.
        reset_timeout: How long it stays open before it half-opens.
        success_threshold: Successes in half-open that close it.
        probes: Commands let through while half-open, across every replica.
        probe_lease: How long a probe taken holds its place in ``probes``; one
            never used (its saga moved on) is given back after it.
    """

    fail_max: int = 5
    reset_timeout: timedelta = timedelta(seconds=30)
    success_threshold: int = 1
    probes: int = 1
    probe_lease: timedelta = timedelta(seconds=30)


class BreakerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One service's shared breaker as the store holds it.

    ``granted`` is set by ``apply("probe")`` only: whether a probe was taken.
    ``held`` says an operator opened it (it does not half-open by itself);
    ``half_open_at`` when an open breaker not held lets probes through.
    """

    service: str
    state: BreakerState = "closed"
    failures: int = 0
    successes: int = 0
    opened_at: datetime | None = None
    held: bool = False
    probes: int = 0
    granted: bool = False
    half_open_at: datetime | None = None


class BreakerEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a service's breaker event log: a transition, or an operator's act."""

    at: datetime
    service: str
    old: BreakerState
    new: BreakerState
    reason: str
    by: str = ""


class BreakerStore(Protocol):
    """Circuit breakers shared by every coordinator replica, one per service.

    Every ``apply`` is one atomic step on the backing server, timed by its clock
    (Redis ``TIME``), so replicas racing on one breaker are serialised there;
    each transition is appended to the service's bounded event log.
    """

    async def apply(
        self,
        service: str,
        op: BreakerOp,
        policy: BreakerPolicy,
        *,
        reason: str = "",
        by: str = "",
    ) -> BreakerSnapshot:
        """Do ``op`` (see :data:`BreakerOp`) and return the breaker as it is after it."""
        ...

    async def snapshot(self, services: Collection[str]) -> Mapping[str, BreakerSnapshot]:
        """The breakers of ``services`` as stored (closed for one never used)."""
        ...

    async def known(self) -> Sequence[str]:
        """Every service whose breaker was ever acted on (``apply``), by a coordinator
        (which refreshes each of its services at start) or an operator."""
        ...

    async def events(self, service: str, limit: int = 20) -> Sequence[BreakerEvent]:
        """The latest events of ``service``'s breaker, newest first."""
        ...

    async def lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take ``name`` for ``ttl`` unless another holder has it (a sweep of one replica)."""
        ...
