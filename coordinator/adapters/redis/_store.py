"""The saga store on Redis: one Lua script commits each transition.

Layout, for namespace ``ns`` and a saga in bucket ``N`` (a hash of its id)::

    ns:{ns.bN}:s:<id>       hash: state, rev, name, status, last (dedupe id of the last
                            commit), and d:<input id> for each input applied (dedupe)
    ns:{ns.bN}:h:<id>       list: the saga's history (a list, not a stream: a stream
                            preallocates ~4.7 KB, more than a whole saga should cost)
    ns:{ns.bN}:timers       zset: "<timer>|<id>" scored by due time (ms)
    ns:{ns.bN}:outbox       hash + ns:{ns.bN}:outbox:z zset scored by commit time
    ns:{ns.bN}:i:<name>:<status>  zset: saga ids by last change, for listing
    ns:{ns.bN}:started      zset: saga ids by their first commit, for listing newest first
    ns:{ns.bN}:p:<service>  zset: saga ids parked behind the service's open breaker,
                            by when they parked (the hash's ``parked`` field says which)

Every score the store writes (outbox, index) is Redis ``TIME`` read inside the
script, never a replica's clock; timer scores are the due times the core set.

Everything in braces is the hash tag: a saga's keys and its bucket's shared
keys are on one slot, so a single script updates all of them, on a Redis
Cluster as well. Sagas are spread over ``buckets`` buckets; pollers walk them.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, final, get_args

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from coordinator.adapters.redis._batch import Batcher, LuaScript
from coordinator.adapters.redis._scripts import COMMIT, PENDING, RECORD, STATES
from coordinator.adapters.redis._started import started_page
from coordinator.adapters.redis._transient import outage_is_unavailable
from coordinator.core import SagaState, SagaStatus
from coordinator.ports import (
    Commit,
    CommitResult,
    HistoryEntry,
    OutboxEntry,
    Refusal,
    SagaCounts,
    Stored,
    pinned,
)

__all__ = ["RedisSagaStore"]

_SEP = "|"
_entry_encoder = msgspec.msgpack.Encoder()
_outbox_decoder = msgspec.msgpack.Decoder(OutboxEntry)
_history_decoder = msgspec.json.Decoder(HistoryEntry)
_refusal_decoder = msgspec.json.Decoder(Refusal)

# The statuses of a saga that has not ended (running, compensating).
_IN_FLIGHT = sorted(set(get_args(SagaStatus)) - SagaState.TERMINAL)
# States read per round trip when looking for the versions in flight.
_VERSIONS_BATCH = 500
# Long enough for any client still waiting for the answer to its start.
REFUSAL_TTL = timedelta(hours=1)

AnyRedis = Redis | RedisCluster


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@final
class RedisSagaStore:
    """Implements ``SagaStore``, ``OutboxStore``, ``TimerStore``, ``SagaQueries``,
    ``SagaVersions``, ``StartedSagas``, ``IdleSagas``, ``ParkedSagas`` (``ns:{ns.bN}:p:<service>``),
    ``CountedSagas`` and ``Refusals`` (``ns:refused:<id>``, a plain key with a TTL
    of an hour).

    Args:
        redis: A ``redis.asyncio`` client (standalone or cluster), bytes responses.
        namespace: Prefix of every key; deployments sharing a Redis pick different ones.
        buckets: How many hash slots the sagas are spread over.
        retention: How long a finished saga (state, history, dedupe) is kept.
    """

    def __init__(
        self,
        redis: AnyRedis,
        *,
        namespace: str = "saga",
        buckets: int = 16,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        # redis-py's annotations are unions of every reply shape; the replies are
        # decoded right below, so the client is held untyped at this boundary.
        self._redis: Any = redis
        self._ns = namespace
        self._buckets = buckets
        self._retention = int(retention.total_seconds())
        # The hot path (load, commit, record) goes through the batcher: many
        # transitions in flight share one pipeline per loop turn.
        self._batch = Batcher(redis)
        self._commit = LuaScript(redis, COMMIT)
        self._record = LuaScript(redis, RECORD)
        self._pending = LuaScript(redis, PENDING)
        self._states = LuaScript(redis, STATES)

    # -- keys ----------------------------------------------------------------------

    def _bucket(self, saga_id: str) -> str:
        return self._prefix(zlib.crc32(saga_id.encode()) % self._buckets)

    def _prefix(self, bucket: int) -> str:
        return f"{self._ns}:{{{self._ns}.b{bucket}}}"

    def _prefixes(self) -> list[str]:
        return [self._prefix(b) for b in range(self._buckets)]

    def _keys(self, saga_id: str) -> list[str]:
        p = self._bucket(saga_id)
        return [
            f"{p}:s:{saga_id}",
            f"{p}:h:{saga_id}",
            f"{p}:timers",
            f"{p}:outbox",
            f"{p}:outbox:z",
        ]

    # -- SagaStore --------------------------------------------------------------------

    @outage_is_unavailable
    async def load(self, saga_id: str) -> Stored | None:
        key = f"{self._bucket(saga_id)}:s:{saga_id}"
        state, rev = await self._batch.execute("HMGET", key, "state", "rev")
        if state is None or rev is None:
            return None
        return Stored(state=state, revision=int(rev))

    @outage_is_unavailable
    async def commit(self, commit: Commit) -> CommitResult:
        saga_id = commit.saga_id
        args: list[Any] = [
            commit.expected_revision,
            commit.revision,
            commit.state,
            commit.dedupe_id,
            commit.name,
            commit.status,
            msgspec.json.encode(commit.history),
            f"{self._bucket(saga_id)}:i:",
            saga_id,
            self._retention,
            1 if commit.status in SagaState.TERMINAL else 0,
            len(commit.outbox),
            len(commit.timers_due),
            len(commit.timers_cancelled),
            "\n".join(sorted(commit.parked)),
            f"{self._bucket(saga_id)}:p:",
            commit.token or commit.dedupe_id,
        ]
        for entry in commit.outbox:
            args += [f"{saga_id}{_SEP}{entry.message_id}", _entry_encoder.encode(entry)]
        for timer, due in commit.timers_due.items():
            args += [f"{timer}{_SEP}{saga_id}", _ms(due)]
        args += [f"{timer}{_SEP}{saga_id}" for timer in commit.timers_cancelled]
        keys = [*self._keys(saga_id), f"{self._bucket(saga_id)}:started"]
        result = await self._batch.run(self._commit, keys, args)
        text = result.decode() if isinstance(result, bytes) else str(result)
        assert text in ("committed", "conflict", "duplicate"), text
        return text  # type: ignore[return-value]

    @outage_is_unavailable
    async def record(self, saga_id: str, entry: HistoryEntry, *, timer: str | None = None) -> None:
        keys = self._keys(saga_id)
        member = f"{timer}{_SEP}{saga_id}" if timer is not None else ""
        args = [msgspec.json.encode(entry), member]
        await self._batch.run(self._record, [keys[1], keys[2]], args)

    # -- OutboxStore -------------------------------------------------------------------

    @outage_is_unavailable
    async def pending(self, older_than: timedelta, limit: int) -> Sequence[OutboxEntry]:
        # One script per bucket, sent together by the batcher (a cluster pipeline
        # refuses scripts otherwise); each judges age by Redis TIME.
        age_ms = int(older_than.total_seconds() * 1000)
        found = await asyncio.gather(
            *(
                self._batch.run(self._pending, [f"{p}:outbox", f"{p}:outbox:z"], [age_ms, limit])
                for p in self._prefixes()
            )
        )
        entries: list[OutboxEntry] = []
        for rows in found:
            for score, body in zip(rows[::2], rows[1::2], strict=True):
                entry = _outbox_decoder.decode(body)
                committed = datetime.fromtimestamp(int(score) / 1000, UTC)
                entries.append(msgspec.structs.replace(entry, created_at=committed))
        entries.sort(key=lambda e: e.created_at)
        return entries[:limit]

    @outage_is_unavailable
    async def done(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        by_bucket: dict[str, list[str]] = {}
        for entry in entries:
            field = f"{entry.saga_id}{_SEP}{entry.message_id}"
            by_bucket.setdefault(self._bucket(entry.saga_id), []).append(field)
        # Two commands per bucket, whatever the number of entries.
        async with self._redis.pipeline(transaction=False) as pipe:
            for p, fields in by_bucket.items():
                pipe.hdel(f"{p}:outbox", *fields)
                pipe.zrem(f"{p}:outbox:z", *fields)
            await pipe.execute()

    # -- TimerStore ---------------------------------------------------------------------

    @outage_is_unavailable
    async def due(self, now: datetime, limit: int) -> Sequence[tuple[str, str, datetime]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for p in self._prefixes():
                pipe.zrangebyscore(
                    f"{p}:timers", "-inf", _ms(now), start=0, num=limit, withscores=True
                )
            by_bucket = await pipe.execute()
        # Each bucket gives its oldest; merged by due time, so that under a backlog
        # larger than ``limit`` the oldest timers of every bucket fire first.
        found: list[tuple[float, str, str]] = []
        for members in by_bucket:
            for member, score in members:
                timer, _, saga_id = member.decode().partition(_SEP)
                found.append((score, saga_id, timer))
        found.sort()
        return [
            (saga_id, timer, datetime.fromtimestamp(score / 1000, UTC))
            for score, saga_id, timer in found[:limit]
        ]

    # -- SagaQueries --------------------------------------------------------------------

    @outage_is_unavailable
    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        rows = await self._redis.lrange(f"{self._bucket(saga_id)}:h:{saga_id}", 0, -1)
        return [_history_decoder.decode(row) for row in rows]

    async def find(
        self, *, name: str | None = None, status: str | None = None, limit: int = 100
    ) -> Sequence[str]:
        pattern = f"{name or '*'}:{status or '*'}"
        scored: list[tuple[float, str]] = []
        for bucket in range(self._buckets):
            p = self._prefix(bucket)
            async for key in self._redis.scan_iter(match=f"{p}:i:{pattern}", count=500):
                rows = await self._redis.zrevrange(key, 0, limit - 1, withscores=True)
                scored += [(score, saga_id.decode()) for saga_id, score in rows]
        scored.sort(reverse=True)
        return [saga_id for _score, saga_id in scored[:limit]]

    @outage_is_unavailable
    async def finished(
        self,
        since: datetime,
        *,
        names: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Sequence[tuple[str, datetime]]:
        # The index of finished sagas is scored by their last transition (Redis TIME)
        # and expires with them: what it holds is what retention still keeps.
        keys = await self._index_keys(SagaState.TERMINAL, names)
        async with self._redis.pipeline(transaction=False) as pipe:
            for _bucket, key in keys:
                if limit is None:
                    pipe.zrangebyscore(key, _ms(since), "+inf", withscores=True)
                else:
                    pipe.zrangebyscore(key, _ms(since), "+inf", start=0, num=limit, withscores=True)
            by_key = await pipe.execute()
        found = sorted((score, saga_id.decode()) for rows in by_key for saga_id, score in rows)
        return [
            (saga_id, datetime.fromtimestamp(score / 1000, UTC)) for score, saga_id in found[:limit]
        ]

    @outage_is_unavailable
    async def started(
        self, *, before: tuple[datetime, str] | None = None, limit: int = 100
    ) -> Sequence[tuple[str, datetime]]:
        return await started_page(self._redis, self._prefixes(), before, limit)

    # -- SagaVersions -------------------------------------------------------------------

    @outage_is_unavailable
    async def versions_in_flight(self) -> Mapping[tuple[str, int], int]:
        # No index says which version a saga runs: the status index lists the
        # sagas in flight, and each one's state says it (its name and version
        # alone are decoded). Read once, at a coordinator's start, a batch of
        # states per script (about 20k sagas in flight in 0.3 s on a laptop);
        # the commit of every transition stays as it is.
        by_bucket: dict[str, list[str]] = {}
        for p, key in await self._index_keys(_IN_FLIGHT, None):
            ids = await self._redis.zrange(key, 0, -1)
            by_bucket.setdefault(p, []).extend(f"{p}:s:{sid.decode()}" for sid in ids)
        batches = [
            keys[start : start + _VERSIONS_BATCH]
            for keys in by_bucket.values()
            for start in range(0, len(keys), _VERSIONS_BATCH)
        ]
        found: Counter[tuple[str, int]] = Counter()
        for batch in batches:  # one at a time: only a batch of states is in memory
            for raw in await self._batch.run(self._states, batch, []):
                if raw:  # it ended, and expired, since the index was read
                    found[pinned(raw)] += 1
        return found

    # -- IdleSagas ----------------------------------------------------------------------

    @outage_is_unavailable
    async def idle(
        self,
        statuses: Collection[str],
        older_than: timedelta,
        *,
        names: Collection[str] | None = None,
        limit: int = 100,
    ) -> Sequence[tuple[str, datetime]]:
        # The listing index (i:<name>:<status>) is scored by the time of each
        # saga's last transition, Redis TIME: the cutoff is taken on that clock
        # too, and each index key answers with its oldest members only.
        seconds, micros = await self._redis.time()
        cutoff = int(seconds) * 1000 + int(micros) // 1000 - int(older_than.total_seconds() * 1000)
        keys = await self._index_keys(statuses, names)
        async with self._redis.pipeline(transaction=False) as pipe:
            for _bucket, key in keys:
                pipe.zrangebyscore(key, "-inf", cutoff, start=0, num=limit, withscores=True)
            by_key = await pipe.execute()
        found = sorted((score, saga_id.decode()) for rows in by_key for saga_id, score in rows)
        return [
            (saga_id, datetime.fromtimestamp(score / 1000, UTC)) for score, saga_id in found[:limit]
        ]

    async def _index_keys(
        self, statuses: Collection[str], names: Collection[str] | None
    ) -> list[tuple[str, str]]:
        """The index keys of ``statuses`` (and ``names``), each with its bucket's prefix."""
        if names is not None:
            # Named: the keys are known, nothing is looked for.
            return [
                (p, f"{p}:i:{name}:{status}")
                for p in self._prefixes()
                for name in sorted(names)
                for status in sorted(statuses)
            ]
        # Unnamed: the index keys are found by name, in one walk of the key names
        # (SCAN, a thousand per round trip on the server; it reads no saga) for
        # every bucket and status at once: each walk covers the whole keyspace.
        prefixes = {f"{p}:i:": p for p in self._prefixes()}
        keys: list[tuple[str, str]] = []
        pattern = f"{self._ns}:{{{self._ns}.b*}}:i:*"
        async for raw in self._redis.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            head, _, status = key.rpartition(":")
            bucket = prefixes.get(head[: head.index(":i:") + 3] if ":i:" in head else "")
            if bucket is not None and status in statuses:
                keys.append((bucket, key))
        return sorted(keys)

    # -- ParkedSagas --------------------------------------------------------------------

    @outage_is_unavailable
    async def parked(self, service: str, limit: int = 100) -> Sequence[str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for p in self._prefixes():
                pipe.zrange(f"{p}:p:{service}", 0, limit - 1, withscores=True)
            by_bucket = await pipe.execute()
        found = sorted((score, sid.decode()) for rows in by_bucket for sid, score in rows)
        return [saga_id for _score, saga_id in found[:limit]]

    @outage_is_unavailable
    async def parked_count(self, service: str) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for p in self._prefixes():
                pipe.zcard(f"{p}:p:{service}")
            counts = await pipe.execute()
        return sum(int(c) for c in counts)

    # -- CountedSagas -------------------------------------------------------------------

    @outage_is_unavailable
    async def counts(
        self, names: Collection[str], statuses: Collection[str], services: Collection[str]
    ) -> SagaCounts:
        # The sizes of the index keys, in one round trip: no saga is read, and
        # the names are given, so no key is looked for.
        pairs = [(name, status) for name in sorted(names) for status in sorted(statuses)]
        parked = sorted(services)
        async with self._redis.pipeline(transaction=False) as pipe:
            for p in self._prefixes():
                for name, status in pairs:
                    pipe.zcard(f"{p}:i:{name}:{status}")
                for service in parked:
                    pipe.zcard(f"{p}:p:{service}")
                pipe.hlen(f"{p}:outbox")
            replies = iter(await pipe.execute())
        by_status = {name: dict.fromkeys(statuses, 0) for name in names}
        waiting = dict.fromkeys(parked, 0)
        outbox = 0
        for _bucket in range(self._buckets):
            for name, status in pairs:
                by_status[name][status] += int(next(replies))
            for service in parked:
                waiting[service] += int(next(replies))
            outbox += int(next(replies))
        return SagaCounts(by_status=by_status, parked=waiting, outbox=outbox)

    # -- Refusals ----------------------------------------------------------------------

    @outage_is_unavailable
    async def record_refusal(self, saga_id: str, refusal: Refusal) -> None:
        await self._redis.set(
            f"{self._ns}:refused:{saga_id}",
            msgspec.json.encode(refusal),
            ex=int(REFUSAL_TTL.total_seconds()),
        )

    @outage_is_unavailable
    async def refusal(self, saga_id: str) -> Refusal | None:
        raw = await self._redis.get(f"{self._ns}:refused:{saga_id}")
        return None if raw is None else _refusal_decoder.decode(raw)

    # -- inspection, for tests and operators ------------------------------------------

    async def outbox_size(self) -> int:
        return sum(
            [await self._redis.hlen(f"{self._prefix(b)}:outbox") for b in range(self._buckets)]
        )

    async def timer_count(self) -> int:
        return sum(
            [await self._redis.zcard(f"{self._prefix(b)}:timers") for b in range(self._buckets)]
        )
