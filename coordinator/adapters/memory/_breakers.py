"""In-memory circuit breakers: the rules of the Redis script, in Python.

Each ``apply`` runs without awaiting, so on one event loop it is as atomic as
the Lua script is on Redis; the contract suite holds both to the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import final

import msgspec

from coordinator.adapters.memory._clock import SystemClock
from coordinator.ports import (
    BreakerEvent,
    BreakerOp,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    Clock,
)

__all__ = ["EVENTS_KEPT", "MemoryBreakerStore"]

EVENTS_KEPT = 100
"""Events kept per service, newest first; older ones are dropped."""


@final
class _Shared(msgspec.Struct, kw_only=True):
    state: BreakerState = "closed"
    failures: int = 0
    successes: int = 0
    opened_at: datetime | None = None
    held: bool = False
    probes: int = 0
    probe_until: datetime | None = None


@final
class MemoryBreakerStore:
    """Implements ``BreakerStore`` in dicts, on an injected clock (a virtual one in tests)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._breakers: dict[str, _Shared] = {}
        self._events: dict[str, list[BreakerEvent]] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._known: set[str] = set()
        # The reset timeout each breaker last opened with, for ``half_open_at``.
        self._timeouts: dict[str, timedelta] = {}

    async def apply(
        self,
        service: str,
        op: BreakerOp,
        policy: BreakerPolicy,
        *,
        reason: str = "",
        by: str = "",
    ) -> BreakerSnapshot:
        b = self._breakers.get(service) or _Shared()
        step = _Step(b, service, self._clock.now(), policy, self._events.setdefault(service, []))
        step.by, step.reason = by, reason
        due = b.opened_at is not None and step.now >= b.opened_at + policy.reset_timeout
        if b.state == "open" and not b.held and due:
            b.successes, b.probes, b.probe_until = 0, 0, None
            step.move("half-open", "reset timeout elapsed")
        _OPS[op](step)
        if step.changed:
            self._breakers[service] = b
            self._timeouts[service] = policy.reset_timeout
        self._known.add(service)
        return _snapshot(service, b, step.granted, policy.reset_timeout)

    async def snapshot(self, services: Collection[str]) -> Mapping[str, BreakerSnapshot]:
        return {
            s: _snapshot(s, self._breakers.get(s) or _Shared(), False, self._timeouts.get(s))
            for s in services
        }

    async def known(self) -> Sequence[str]:
        return sorted(self._known)

    async def events(self, service: str, limit: int = 20) -> Sequence[BreakerEvent]:
        return list(self._events.get(service, ())[:limit])

    async def lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        now = self._clock.now()
        current = self._leases.get(name)
        if current is not None and current[1] > now and current[0] != holder:
            return False
        self._leases[name] = (holder, now + ttl)
        return True


@final
class _Step:
    """One ``apply`` on one breaker: the rules of the Redis script's ``APPLY``."""

    def __init__(
        self,
        b: _Shared,
        service: str,
        now: datetime,
        policy: BreakerPolicy,
        log: list[BreakerEvent],
    ) -> None:
        self.b, self.service, self.now, self.policy, self.log = b, service, now, policy, log
        self.by = self.reason = ""
        self.changed = self.granted = False

    def move(self, new: BreakerState, why: str, *, always: bool = False) -> None:
        if new != self.b.state or always:
            event = BreakerEvent(
                at=self.now,
                service=self.service,
                old=self.b.state,
                new=new,
                reason=why,
                by=self.by,
            )
            self.log.insert(0, event)
            del self.log[EVENTS_KEPT:]
        self.b.state = new
        self.changed = True


def _failure(s: _Step) -> None:
    b = s.b
    if b.state == "closed":
        b.failures += 1
        s.changed = True
        if b.failures >= s.policy.fail_max:
            b.opened_at, b.successes = s.now, 0
            s.move("open", f"{b.failures} consecutive failures")
    elif b.state == "half-open":
        b.opened_at, b.successes = s.now, 0
        s.move("open", "a probe failed")


def _success(s: _Step) -> None:
    b = s.b
    if b.state == "closed":
        if b.failures:
            b.failures, s.changed = 0, True
    elif b.state == "half-open":
        b.successes += 1
        s.changed = True
        if b.successes >= s.policy.success_threshold:
            b.failures, b.successes, b.probes, b.probe_until = 0, 0, 0, None
            s.move("closed", f"{s.policy.success_threshold} probe(s) succeeded")


def _probe(s: _Step) -> None:
    b = s.b
    if b.state != "half-open":
        return
    if b.probe_until is None or s.now >= b.probe_until:
        b.probes = 0
    if b.probes < s.policy.probes:
        b.probes, b.probe_until = b.probes + 1, s.now + s.policy.probe_lease
        s.granted = s.changed = True


def _open(s: _Step) -> None:
    s.b.held, s.b.opened_at, s.b.successes = True, s.now, 0
    s.move("open", s.reason, always=True)


def _close(s: _Step) -> None:
    b = s.b
    b.held, b.failures, b.successes, b.probes, b.probe_until = False, 0, 0, 0, None
    s.move("closed", s.reason, always=True)


def _reset(s: _Step) -> None:
    b = s.b
    b.failures, b.successes, b.probes, b.probe_until = 0, 0, 0, None
    if b.held:
        b.held, b.opened_at = False, s.now
    s.move(b.state, s.reason, always=True)


_OPS: dict[BreakerOp, Callable[[_Step], None]] = {
    "refresh": lambda s: None,
    "failure": _failure,
    "success": _success,
    "probe": _probe,
    "open": _open,
    "close": _close,
    "reset": _reset,
}


def _snapshot(
    service: str, b: _Shared, granted: bool, reset_timeout: timedelta | None
) -> BreakerSnapshot:
    half_open_at = None
    if b.state == "open" and not b.held and b.opened_at is not None and reset_timeout:
        half_open_at = b.opened_at + reset_timeout
    return BreakerSnapshot(
        service=service,
        state=b.state,
        failures=b.failures,
        successes=b.successes,
        opened_at=b.opened_at,
        held=b.held,
        probes=b.probes,
        granted=granted,
        half_open_at=half_open_at,
    )
