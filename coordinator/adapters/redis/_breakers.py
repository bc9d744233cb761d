"""Circuit breakers shared by every replica: one Lua script per step, on Redis ``TIME``.

Layout, for namespace ``ns`` (one hash tag: every breaker on one slot)::

    ns:{ns.breakers}:b:<service>   hash: state, failures, successes, opened_at (ms),
                                   held, probes, probe_until (ms)
    ns:{ns.breakers}:e:<service>   list: the service's events, newest first, capped
    ns:{ns.breakers}:known         set: services whose breaker was ever written
    ns:{ns.breakers}:lease:<name>  string: who holds a sweep, with a PX expiry

Why this is safe with replicas racing: every change (count, trip, half-open,
probe, close, an operator's act) is one script, so Redis serialises them and
each sees the result of the one before; ``opened_at`` and the probe lease are
Redis ``TIME``, one clock for all. Two replicas counting the fifth and sixth
failure at once trip the breaker once (the second sees it open and its failure
is ignored), and two replicas asking for the one probe get it once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, final

import msgspec

from coordinator.adapters.memory._breakers import EVENTS_KEPT
from coordinator.adapters.redis._transient import outage_is_unavailable
from coordinator.ports import (
    BreakerEvent,
    BreakerOp,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
)

__all__ = ["RedisBreakerStore"]

# KEYS: breaker hash, events list, known set
# ARGV: op, service, fail_max, reset_timeout_ms, success_threshold, probes,
#       probe_lease_ms, reason, by, events kept
# Returns: state, failures, successes, opened_at_ms, held, probes, granted, half_open_at_ms.
# Every service acted on joins the known set (the operator's list), written or not.
# The same rules as MemoryBreakerStore.apply, line for line.
APPLY = """
local key, log = KEYS[1], KEYS[2]
local op, service = ARGV[1], ARGV[2]
local fail_max, reset_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local threshold, budget, lease_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', key, 'state', 'failures', 'successes', 'opened_at', 'held',
                     'probes', 'probe_until')
local b = {state = h[1] or 'closed', failures = tonumber(h[2] or 0),
           successes = tonumber(h[3] or 0), opened_at = tonumber(h[4] or -1),
           held = tonumber(h[5] or 0), probes = tonumber(h[6] or 0),
           probe_until = tonumber(h[7] or -1)}
local changed = false
local function move(new, why, always)
  if new ~= b.state or always then
    redis.call('LPUSH', log, cjson.encode({at = now, service = service, old = b.state,
                                           new = new, reason = why, by = ARGV[9]}))
    redis.call('LTRIM', log, 0, tonumber(ARGV[10]) - 1)
  end
  b.state = new
  changed = true
end
if b.state == 'open' and b.held == 0 and b.opened_at >= 0 and now >= b.opened_at + reset_ms then
  b.successes, b.probes, b.probe_until = 0, 0, -1
  move('half-open', 'reset timeout elapsed', false)
end
local granted = 0
if op == 'failure' then
  if b.state == 'closed' then
    b.failures = b.failures + 1
    changed = true
    if b.failures >= fail_max then
      b.opened_at, b.successes = now, 0
      move('open', b.failures .. ' consecutive failures', false)
    end
  elseif b.state == 'half-open' then
    b.opened_at, b.successes = now, 0
    move('open', 'a probe failed', false)
  end
elseif op == 'success' then
  if b.state == 'closed' then
    if b.failures ~= 0 then b.failures = 0; changed = true end
  elseif b.state == 'half-open' then
    b.successes = b.successes + 1
    changed = true
    if b.successes >= threshold then
      b.failures, b.successes, b.probes, b.probe_until = 0, 0, 0, -1
      move('closed', threshold .. ' probe(s) succeeded', false)
    end
  end
elseif op == 'probe' then
  if b.state == 'half-open' then
    if b.probe_until < 0 or now >= b.probe_until then b.probes = 0 end
    if b.probes < budget then
      b.probes, b.probe_until, granted = b.probes + 1, now + lease_ms, 1
      changed = true
    end
  end
elseif op == 'open' then
  b.held, b.opened_at, b.successes = 1, now, 0
  move('open', ARGV[8], true)
elseif op == 'close' then
  b.held, b.failures, b.successes, b.probes, b.probe_until = 0, 0, 0, 0, -1
  move('closed', ARGV[8], true)
elseif op == 'reset' then
  b.failures, b.successes, b.probes, b.probe_until = 0, 0, 0, -1
  if b.held == 1 then b.held, b.opened_at = 0, now end
  move(b.state, ARGV[8], true)
end
local half_open_at = -1
if b.state == 'open' and b.held == 0 then half_open_at = b.opened_at + reset_ms end
if changed then
  redis.call('HSET', key, 'state', b.state, 'failures', b.failures, 'successes', b.successes,
             'opened_at', b.opened_at, 'held', b.held, 'probes', b.probes,
             'probe_until', b.probe_until, 'half_open_at', half_open_at)
end
redis.call('SADD', KEYS[3], service)
return {b.state, b.failures, b.successes, b.opened_at, b.held, b.probes, granted, half_open_at}
"""

# KEYS: lease key; ARGV: holder, ttl_ms. Taken when free or already this holder's.
LEASE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

_event_decoder = msgspec.json.Decoder(dict[str, Any])


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@final
class RedisBreakerStore:
    """Implements ``BreakerStore`` on Redis.

    Args:
        redis: A ``redis.asyncio`` client (standalone or cluster), bytes responses.
        namespace: The deployment's namespace (the saga store's).
    """

    def __init__(self, redis: Any, *, namespace: str = "saga") -> None:
        self._redis: Any = redis
        self._prefix = f"{namespace}:{{{namespace}.breakers}}"
        self._apply = redis.register_script(APPLY)
        self._lease = redis.register_script(LEASE)

    @outage_is_unavailable
    async def apply(
        self,
        service: str,
        op: BreakerOp,
        policy: BreakerPolicy,
        *,
        reason: str = "",
        by: str = "",
    ) -> BreakerSnapshot:
        keys = [f"{self._prefix}:b:{service}", f"{self._prefix}:e:{service}", self._known]
        args = [
            op,
            service,
            policy.fail_max,
            _ms(policy.reset_timeout),
            policy.success_threshold,
            policy.probes,
            _ms(policy.probe_lease),
            reason,
            by,
            EVENTS_KEPT,
        ]
        row = await self._apply(keys=keys, args=args)
        return _snapshot(service, row)

    @property
    def _known(self) -> str:
        return f"{self._prefix}:known"

    @outage_is_unavailable
    async def snapshot(self, services: Collection[str]) -> Mapping[str, BreakerSnapshot]:
        names = list(services)
        async with self._redis.pipeline(transaction=False) as pipe:
            for s in names:
                pipe.hmget(
                    f"{self._prefix}:b:{s}",
                    "state",
                    "failures",
                    "successes",
                    "opened_at",
                    "held",
                    "probes",
                    "half_open_at",
                )
            rows = await pipe.execute()
        return {s: _snapshot(s, [*row[:6], 0, row[6]]) for s, row in zip(names, rows, strict=True)}

    @outage_is_unavailable
    async def known(self) -> Sequence[str]:
        return sorted(m.decode() for m in await self._redis.smembers(self._known))

    @outage_is_unavailable
    async def events(self, service: str, limit: int = 20) -> Sequence[BreakerEvent]:
        rows = await self._redis.lrange(f"{self._prefix}:e:{service}", 0, limit - 1)
        events = []
        for row in rows:
            raw = _event_decoder.decode(row)
            events.append(
                BreakerEvent(
                    at=_at(int(raw["at"])),
                    service=str(raw["service"]),
                    old=raw["old"],
                    new=raw["new"],
                    reason=str(raw.get("reason", "")),
                    by=str(raw.get("by", "")),
                )
            )
        return events

    @outage_is_unavailable
    async def lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        taken = await self._lease(keys=[f"{self._prefix}:lease:{name}"], args=[holder, _ms(ttl)])
        return bool(int(taken))


_STATES: dict[str, BreakerState] = {"closed": "closed", "open": "open", "half-open": "half-open"}


def _snapshot(service: str, row: list[Any]) -> BreakerSnapshot:
    state = row[0].decode() if isinstance(row[0], bytes) else row[0]
    opened = int(row[3]) if row[3] is not None else -1
    return BreakerSnapshot(
        service=service,
        state=_STATES.get(state or "closed", "closed"),
        failures=int(row[1] or 0),
        successes=int(row[2] or 0),
        opened_at=_at(opened) if opened >= 0 else None,
        held=bool(int(row[4] or 0)),
        probes=int(row[5] or 0),
        granted=bool(int(row[6] or 0)),
        half_open_at=_at(int(row[7])) if row[7] is not None and int(row[7]) >= 0 else None,
    )
