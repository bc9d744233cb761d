"""The participants' reply store: replies by idempotency key, and the holds that
fence a key across worker processes, in two Lua scripts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from coordinator.adapters.redis._batch import Batcher, LuaScript
from coordinator.adapters.redis._transient import outage_is_unavailable
from coordinator.ports import RecordedReply, Turn

__all__ = ["RedisIdempotencyStore"]


# KEYS: reply, claim, tombstone, the other kind's claim, the reply under the
# key shape of earlier versions (or the reply again), the command's own reply (or
# the reply again). ARGV: holder, ttl_ms, kind (a: action, c: compensation,
# anything else: a key of no step), tombstone_ttl_s. Returns the reply, 1 (ours
# now), 0 (someone else's: wait), or 2 (an action whose step's compensation has
# begun: refuse it). Everything is checked in the script that takes the key, so
# no action starts between a compensation's check and its tombstone: the two
# kinds of a step share a hash tag, hence a slot. The command's own reply comes
# first: whatever the key's later attempts got, that command was answered so.
_BEGIN = """
local reply = redis.call('GET', KEYS[6]) or redis.call('GET', KEYS[1])
  or redis.call('GET', KEYS[5])
if reply then return reply end
local kind = ARGV[3]
if kind == 'a' and redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if kind == 'c' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local ours = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if not ours then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
if kind == 'c' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[4]) end
return 1
"""

# KEYS: reply, claim. ARGV: holder, reply_ttl_s, reply, has_reply. The claim is deleted
# only if it is still ours: it may have expired and been taken by another worker.
_FINISH = """
if ARGV[4] == '1' then redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

_KIND_FLAG = {"action": "a", "compensation": "c"}
# What _BEGIN returns when no reply is recorded.
_TURNS: Final = {1: Turn.TAKEN, 0: Turn.HELD_ELSEWHERE, 2: Turn.COMPENSATED}


@final
class RedisIdempotencyStore:
    """Replies a participant gave, by idempotency key, kept for ``ttl``.

    Layout, for namespace ``ns`` and the key ``<saga>:<step>:<kind>``::

        ns:reply:{<saga>:<step>}:<kind>   the recorded reply, for ``ttl``
        ns:claim:{<saga>:<step>}:<kind>   the worker holding it, for its lease
        ns:tomb:{<saga>:<step>}           the step's compensation has begun, for ``ttl``
        ns:command:{<saga>:<step>}:<kind>:<command id>
                                          the reply recorded for that command alone
                                          (a retryable failure), for ``ttl``

    Earlier versions kept replies under ``ns:reply:{<saga>:<step>:<kind>}``;
    on a single Redis those are still read (a deployment upgraded mid-saga
    answers a retry from them). A cluster cannot read them in the same script
    (another slot); there such a retry runs its handler again, which the
    handler's own idempotency absorbs. They expire within ``ttl`` of the upgrade.
    """

    def __init__(self, redis: Redis | RedisCluster, *, namespace: str, ttl: timedelta) -> None:
        self._redis: Any = redis
        self._ns = namespace
        self._legacy = not isinstance(redis, RedisCluster)
        # A worker runs many commands at once: their calls share pipelines.
        self._batch = Batcher(redis)
        self._begin = LuaScript(redis, _BEGIN)
        self._finish = LuaScript(redis, _FINISH)
        self._ttl = int(ttl.total_seconds())

    @outage_is_unavailable
    async def begin(
        self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
    ) -> RecordedReply | Turn:
        keys, kind = self._keys(key, command)
        found = await self._batch.run(
            self._begin, keys, [holder, int(ttl.total_seconds() * 1000), kind, self._ttl]
        )
        if isinstance(found, bytes):
            return RecordedReply(found)
        return _TURNS[found]

    @outage_is_unavailable
    async def finish(
        self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
    ) -> None:
        has_reply = 1 if reply is not None else 0
        args: list[str | int | bytes] = [holder, self._ttl, reply or b"", has_reply]
        keys = self._keys(key, command)[0]
        # A command's own reply is recorded where its key's reply would be.
        recorded = keys[5] if command is not None else keys[0]
        await self._batch.run(self._finish, [recorded, keys[1]], args)

    def _keys(self, key: str, command: str | None) -> tuple[list[str], str]:
        step, _, kind = key.rpartition(":")
        flag = _KIND_FLAG.get(kind)
        ns = self._ns
        if flag is None or not step:  # not a step's key: a tag of its own
            tag, suffix, other = f"{{{key}}}", "", ""
        else:
            tag, suffix = f"{{{step}}}", f":{kind}"
            other = ":compensation" if kind == "action" else ":action"
        reply = f"{ns}:reply:{tag}{suffix}"
        return [
            reply,
            f"{ns}:claim:{tag}{suffix}",
            f"{ns}:tomb:{tag}",
            f"{ns}:claim:{tag}{other}",
            f"{ns}:reply:{{{key}}}" if self._legacy and suffix else reply,
            f"{ns}:command:{tag}{suffix}:{command}" if command is not None else reply,
        ], flag or ""
