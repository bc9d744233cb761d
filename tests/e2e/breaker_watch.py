"""What the circuit-breaker scenarios observe: the shared breakers in Redis (state,
parked count, event log), each replica's own view (its log), and the commands a
service received (the participants' ledger), lined up on one time axis.

The breaker's event log is timed by Redis (``TIME``), and so is every command's
deadline (the coordinators run on ``RedisClock``): a command was sent at its
deadline less the step's timeout, which places it in the breaker's closed,
open or half-open periods exactly, whenever the participant got round to it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from procs import Deployment, Proc

from coordinator.adapters.redis import RedisBreakerStore, RedisSagaStore, connect_redis
from coordinator.client._breakers import BreakerStatus, breaker_statuses
from coordinator.examples.orders.services import Received
from coordinator.ports import BreakerEvent

# The breaker settings the scenarios run with: quick to open, quick to half-open.
FAIL_MAX = 3
RESET_SECONDS = 3.0
PROBES = 1


def breaker_env(*services: str) -> dict[str, str]:
    """``SAGA_BREAKERS`` for ``services`` (``reset_timeout`` in seconds, as settings take it)."""
    table = {
        s: {"fail_max": FAIL_MAX, "reset_timeout": RESET_SECONDS, "probes": PROBES}
        for s in services
    }
    # JSON logs: each replica's own breaker transitions are read from them, with their times.
    return {"SAGA_BREAKERS": json.dumps(table), "SAGA_LOG_FORMAT": "json"}


@dataclass(frozen=True)
class Period:
    """A stretch of time the shared breaker spent in one state (``end`` None: still in it)."""

    state: str
    start: datetime
    end: datetime | None

    def holds(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


class Breakers:
    """The namespace's shared breakers and parked sagas, read as the operator's tools do."""

    def __init__(self, redis: Any, namespace: str, buckets: int) -> None:
        self.store = RedisBreakerStore(redis, namespace=namespace)
        self.sagas = RedisSagaStore(redis, namespace=namespace, buckets=buckets)

    async def status(self, service: str) -> BreakerStatus | None:
        """The breaker as ``saga breakers`` shows it; None before a replica registered it."""
        found = [s for s in await breaker_statuses(self.store, self.sagas) if s.service == service]
        return found[0] if found else None

    async def events(self, service: str) -> list[BreakerEvent]:
        """Every transition of the breaker, oldest first."""
        return list(reversed(await self.store.events(service, limit=1000)))

    async def periods(self, service: str) -> list[Period]:
        """The breaker's states over time, from its first transition on."""
        events = await self.events(service)
        return [
            Period(e.new, e.at, events[i + 1].at if i + 1 < len(events) else None)
            for i, e in enumerate(events)
        ]


@asynccontextmanager
async def breakers_of(d: Deployment) -> AsyncIterator[Breakers]:
    redis = connect_redis(d.redis_url)
    try:
        yield Breakers(redis, d.ns, d.settings.buckets)
    finally:
        await redis.aclose()


# How far a replica's RedisClock may be behind Redis TIME: half a round trip when it
# last synced, a few milliseconds; generous for a busy machine.
SLACK = timedelta(milliseconds=100)


def sent_at(command: Received, timeout: timedelta) -> datetime:
    """When the coordinator sent ``command``: its deadline less the step's timeout."""
    assert command.deadline is not None, f"{command} has no deadline"
    return datetime.fromtimestamp(command.deadline, UTC) - timeout


def replica_transitions(proc: Proc, service: str) -> list[tuple[datetime, str]]:
    """``(when, "closed -> open")`` for each change of ``service``'s breaker that the
    replica ``proc`` saw (its log, one JSON object a line)."""
    prefix = f"breaker {service}: "
    found = []
    for line in proc.log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = str(record.get("event", ""))
        if event.startswith(prefix):
            when = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            found.append((when, event.removeprefix(prefix)))
    return found


def first_open(proc: Proc, service: str) -> datetime | None:
    """When ``proc`` first saw ``service``'s breaker open (and so stopped sending to it)."""
    opened = [at for at, change in replica_transitions(proc, service) if change.endswith("open")]
    return min(opened, default=None)


def _period_of(periods: Sequence[Period], at: datetime) -> int | None:
    index = next((i for i, p in enumerate(periods) if p.holds(at)), None)
    if index is not None and index + 1 < len(periods):
        following = periods[index + 1]
        if following.state == "half-open" and at + SLACK >= following.start:
            return index + 1  # a probe, placed by a replica's clock a little behind Redis
    return index


@dataclass
class Tally:
    """The commands to one service sent in each period of its breaker."""

    before_open: int
    in_grace: int  # sent in the first GRACE after the opening: replicas still learning it
    while_open: list[Received]
    per_half_open: list[int]
    after_close: int


def tally(
    commands: Sequence[Received],
    periods: Sequence[Period],
    *,
    timeout: timedelta,
    grace: timedelta,
) -> Tally:
    """Place each command in the breaker period it was sent in."""
    opened = next(p.start for p in periods if p.state == "open")
    result = Tally(0, 0, [], [0] * sum(p.state == "half-open" for p in periods), 0)
    for command in commands:
        at = sent_at(command, timeout)
        if at < opened:
            result.before_open += 1
            continue
        if at < opened + grace:
            result.in_grace += 1
            continue
        index = _period_of(periods, at)
        state = periods[index].state if index is not None else "closed"
        if state == "open":
            result.while_open.append(command)
        elif state == "half-open":
            assert index is not None
            result.per_half_open[sum(p.state == "half-open" for p in periods[:index])] += 1
        else:
            result.after_close += 1
    return result
