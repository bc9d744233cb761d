"""One contract for the saga store, run against memory and against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from servers import connect_redis, drop_namespace

from coordinator.adapters.memory import MemorySagaStore, VirtualClock
from coordinator.adapters.redis import RedisSagaStore
from coordinator.ports import Commit, HistoryEntry, OutboxEntry, Refusal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemorySagaStore()
        return
    client = await connect_redis()
    yield RedisSagaStore(client, namespace=ns, buckets=4, retention=timedelta(hours=1))
    await drop_namespace(client, ns)
    await client.aclose()


def entry(note: str = "n", at: datetime = T0) -> HistoryEntry:
    return HistoryEntry(
        at=at, revision=0, input=msgspec.Raw(b'{"type":"X"}'), note=note, effects=msgspec.Raw(b"[]")
    )


def outbox(saga_id: str, message_id: str, at: datetime = T0) -> OutboxEntry:
    return OutboxEntry(
        saga_id=saga_id,
        message_id=message_id,
        exchange="commands",
        routing_key="svc.Do",
        body=b"{}",
        created_at=at,
    )


def commit(
    saga_id: str = "s1",
    *,
    expected: int = -1,
    dedupe: str = "d0",
    status: str = "running",
    history: HistoryEntry | None = None,
    **extra: Any,
) -> Commit:
    return Commit(
        saga_id=saga_id,
        name="order",
        status=status,
        expected_revision=expected,
        revision=expected + 1,
        state=f"state-{expected + 1}".encode(),
        dedupe_id=dedupe,
        history=history or entry(f"rev {expected + 1}"),
        **extra,
    )


async def test_load_of_a_missing_saga_is_none(store: Any) -> None:
    assert await store.load("nope") is None


async def test_create_then_load(store: Any) -> None:
    assert await store.commit(commit()) == "committed"
    stored = await store.load("s1")
    assert (stored.state, stored.revision) == (b"state-0", 0)


async def test_second_create_conflicts(store: Any) -> None:
    assert await store.commit(commit(dedupe="a")) == "committed"
    assert await store.commit(commit(dedupe="b")) == "conflict"


async def test_stale_revision_conflicts_and_changes_nothing(store: Any) -> None:
    await store.commit(commit())
    await store.commit(commit(expected=0, dedupe="d1"))
    assert await store.commit(commit(expected=0, dedupe="d2")) == "conflict"
    assert (await store.load("s1")).revision == 1
    assert len(await store.history("s1")) == 2


async def test_applied_input_is_a_duplicate(store: Any) -> None:
    await store.commit(commit())
    await store.commit(commit(expected=0, dedupe="reply-1"))
    await store.commit(commit(expected=1, dedupe="reply-2"))
    assert await store.commit(commit(expected=2, dedupe="reply-1")) == "duplicate"
    assert (await store.load("s1")).revision == 2


async def test_retrying_the_commit_that_succeeded_reports_committed(store: Any) -> None:
    """What redis-py does after a timeout: the same command again."""
    await store.commit(commit())
    again = commit(expected=0, dedupe="reply-1", outbox=[outbox("s1", "m1")], token="t1")
    assert await store.commit(again) == "committed"
    if isinstance(store, MemorySagaStore):
        return  # memory commits cannot time out halfway
    assert await store.commit(again) == "committed"
    assert (await store.load("s1")).revision == 1
    assert len(await store.history("s1")) == 2
    assert await store.outbox_size() == 1


async def test_the_same_input_from_another_replica_is_a_duplicate(store: Any) -> None:
    """Two replicas fire one due timer from the same revision: they decide alike,
    but only the first commit is committed; the second must not publish its copy."""
    await store.commit(commit())
    first = commit(expected=0, dedupe="timer:retry:a:2", token="replica-a")
    second = commit(expected=0, dedupe="timer:retry:a:2", token="replica-b")
    assert await store.commit(first) == "committed"
    assert await store.commit(second) == "duplicate"
    assert len(await store.history("s1")) == 2


async def test_history_keeps_order_and_records(store: Any) -> None:
    await store.commit(commit())
    await store.record("s1", entry("late reply ignored"))
    await store.commit(commit(expected=0, dedupe="d1"))
    notes = [e.note for e in await store.history("s1")]
    assert notes == ["rev 0", "late reply ignored", "rev 1"]


async def test_outbox_pending_and_done(store: Any) -> None:
    await store.commit(commit(outbox=[outbox("s1", "m1", T0), outbox("s1", "m2", T0)]))
    await store.commit(commit("s2", outbox=[outbox("s2", "m3", T0)]))
    pending = await store.pending(timedelta(0), 10)
    assert sorted(e.message_id for e in pending) == ["m1", "m2", "m3"]
    assert {e.body for e in pending} == {b"{}"}
    await store.done([e for e in pending if e.message_id != "m2"])
    assert [e.message_id for e in await store.pending(timedelta(0), 10)] == ["m2"]
    assert await store.outbox_size() == 1
    assert len(await store.pending(timedelta(0), 1)) == 1


SKEW = timedelta(days=365)


@pytest.mark.parametrize("skew", [-SKEW, SKEW], ids=["writer-behind", "writer-ahead"])
async def test_outbox_age_is_judged_on_the_store_clock_not_the_writers(
    store: Any, skew: timedelta
) -> None:
    # A replica whose clock is a year off stamps its entries a year off. Until
    # issue 10 the Redis relay compared the writer's stamp with its own clock:
    # behind, a fresh entry was republished at once; ahead, an old one waited.
    before = datetime.now(UTC)
    await store.commit(commit(outbox=[outbox("s1", "m1", before + skew)]))
    after = datetime.now(UTC)
    assert await store.pending(timedelta(minutes=5), 10) == []  # fresh: not relayed
    [entry] = await store.pending(timedelta(0), 10)  # as old as asked: relayed
    # created_at is the store's commit time in both adapters, not the writer's stamp.
    slack = timedelta(seconds=30)  # the test host's clock against Redis TIME
    assert before - slack <= entry.created_at <= after + slack


async def test_memory_outbox_age_follows_its_injected_clock_oldest_first() -> None:
    clock = VirtualClock(T0)
    store = MemorySagaStore(clock=clock)
    await store.commit(commit("s1", outbox=[outbox("s1", "late", T0)]))
    clock.advance(timedelta(seconds=1))
    await store.commit(commit("s2", outbox=[outbox("s2", "later", T0 - timedelta(hours=1))]))
    clock.advance(timedelta(seconds=4))
    assert [e.message_id for e in await store.pending(timedelta(seconds=5), 10)] == ["late"]
    clock.advance(timedelta(seconds=1))
    found = await store.pending(timedelta(seconds=5), 10)
    assert [(e.message_id, e.created_at) for e in found] == [
        ("late", T0),
        ("later", T0 + timedelta(seconds=1)),
    ]


async def test_timers_due_in_order_and_cancelled(store: Any) -> None:
    due = {"timeout:a:action:1": T0 + timedelta(seconds=10), "deadline": T0 + timedelta(hours=1)}
    await store.commit(commit(timers_due=due))
    await store.commit(commit("s2", timers_due={"retry:b:action:2": T0 + timedelta(seconds=5)}))
    assert await store.due(T0, 10) == []
    # Earliest due first (s2's at +5 s before s1's at +10 s), whatever the commit order,
    # each with its due time (for the timer lag in the metrics).
    retry = ("s2", "retry:b:action:2", T0 + timedelta(seconds=5))
    assert await store.due(T0 + timedelta(seconds=10), 10) == [
        retry,
        ("s1", "timeout:a:action:1", T0 + timedelta(seconds=10)),
    ]
    assert await store.due(T0 + timedelta(seconds=10), 1) == [retry]
    await store.commit(commit(expected=0, dedupe="d1", timers_cancelled=["timeout:a:action:1"]))
    assert await store.due(T0 + timedelta(minutes=1), 10) == [retry]
    await store.record("s2", entry(), timer="retry:b:action:2")
    assert await store.due(T0 + timedelta(minutes=1), 10) == []
    assert await store.timer_count() == 1  # the deadline


async def test_find_by_name_and_status(store: Any) -> None:
    await store.commit(commit("a"))
    await store.commit(commit("b"))
    await store.commit(commit("b", expected=0, dedupe="d1", status="completed"))
    assert sorted(await store.find(name="order")) == ["a", "b"]
    assert await store.find(status="completed") == ["b"]
    assert await store.find(status="running") == ["a"]
    assert await store.find(name="other") == []


async def test_counts_by_status_parked_and_outbox(store: Any) -> None:
    """The metrics' gauges: counts from the indexes, 0 for what has nothing."""
    await store.commit(commit("a"))
    await store.commit(commit("b", parked=["payments"], outbox=[outbox("b", "m1")]))
    await store.commit(commit("c", status="compensating", outbox=[outbox("c", "m2")]))
    await store.commit(commit("d"))
    await store.commit(commit("d", expected=0, dedupe="d1", status="completed"))
    counts = await store.counts(
        ["order", "other"], ["running", "compensating"], ["payments", "shipping"]
    )
    assert counts.by_status == {
        "order": {"running": 2, "compensating": 1},
        "other": {"running": 0, "compensating": 0},
    }
    assert counts.parked == {"payments": 1, "shipping": 0}
    assert counts.outbox == 2
    await store.commit(commit("b", expected=0, dedupe="d1", status="compensating"))
    await store.done(await store.pending(timedelta(0), 10))
    counts = await store.counts(["order"], ["running", "compensating"], ["payments"])
    assert counts.by_status == {"order": {"running": 1, "compensating": 2}}
    assert (counts.parked, counts.outbox) == ({"payments": 0}, 0)


async def test_redis_finished_sagas_expire_after_retention(redis_client: Redis, ns: str) -> None:
    store = RedisSagaStore(redis_client, namespace=ns, buckets=2, retention=timedelta(seconds=30))
    await store.commit(commit())
    await store.commit(commit(expected=0, dedupe="d1", status="completed"))
    keys = [k async for k in redis_client.scan_iter(match=f"{ns}:*:[sh]:s1")]
    assert len(keys) == 2
    # The index of finished sagas goes too, with the last saga that finished in it.
    keys += [k async for k in redis_client.scan_iter(match=f"{ns}:*:i:*:completed")]
    assert len(keys) == 3
    for key in keys:
        assert 0 < await redis_client.ttl(key) <= 30


async def test_redis_keys_of_a_saga_share_one_hash_slot(redis_client: Redis, ns: str) -> None:
    from redis.crc import key_slot

    store = RedisSagaStore(redis_client, namespace=ns, buckets=8)
    await store.commit(
        commit("slot-test", outbox=[outbox("slot-test", "m")], timers_due={"deadline": T0})
    )
    keys = [k async for k in redis_client.scan_iter(match=f"{ns}:*")]
    owned = [
        k for k in keys if b"slot-test" in k or k.endswith((b"timers", b"outbox", b"outbox:z"))
    ]
    assert len({key_slot(k) for k in owned}) == 1, owned


async def test_a_refusal_is_kept_for_the_client_and_the_latest_wins(store: Any) -> None:
    assert await store.refusal("r1") is None
    first = Refusal(reason="unknown_saga", detail="no saga definition named 'x'", sent_at=T0)
    await store.record_refusal("r1", first)
    assert await store.refusal("r1") == first
    later = Refusal(reason="schema_mismatch", detail="at `$.a`", sent_at=T0 + timedelta(1))
    await store.record_refusal("r1", later)
    assert await store.refusal("r1") == later
    assert await store.refusal("r2") is None
    assert await store.history("r1") == [], "a refusal is no saga"


async def test_history_entries_carry_the_input_id_and_the_refusal(store: Any) -> None:
    refused = msgspec.structs.replace(entry("refused"), input_id="m-2", refused="no such wait")
    applied = msgspec.structs.replace(entry("applied"), input_id="m-1")
    assert await store.commit(commit(history=applied)) == "committed"
    await store.record("s1", refused)
    applied, back = await store.history("s1")
    assert (applied.input_id, applied.refused) == ("m-1", "")
    assert back == refused


async def _everything(store: Any, ns: str) -> dict[str, Any]:
    """All a store holds, through every port, and for Redis every key of the namespace."""
    far = T0 + timedelta(days=365)
    seen: dict[str, Any] = {
        "states": {s: await store.load(s) for s in ("s1", "s2")},
        "history": {s: list(await store.history(s)) for s in ("s1", "s2")},
        "outbox": sorted(e.message_id for e in await store.pending(timedelta(0), 1000)),
        "timers": sorted(await store.due(far, 1000)),
        "index": {
            status: sorted(await store.find(status=status, limit=1000))
            for status in ("running", "compensating", "completed")
        },
        "sizes": (await store.outbox_size(), await store.timer_count()),
    }
    if isinstance(store, RedisSagaStore):
        client = await connect_redis()
        try:
            keys = sorted([k async for k in client.scan_iter(match=f"{ns}:*", count=1000)])
            seen["keys"] = {k: await client.dump(k) for k in keys}
        finally:
            await client.aclose()
    return seen


@pytest.mark.parametrize("refused", ["conflict", "duplicate", "exists"])
async def test_a_refused_commit_writes_nothing(store: Any, ns: str, refused: str) -> None:
    """All or nothing: a commit refused by its revision or by its dedupe id leaves
    no state, history line, outbox entry, timer, timer cancel or index entry."""
    await store.commit(
        commit(timers_due={"timeout:a:action:1": T0 + timedelta(seconds=10)}, dedupe="start")
    )
    await store.commit(commit(expected=0, dedupe="reply-1", outbox=[outbox("s1", "m1")]))
    before = await _everything(store, ns)
    expected, dedupe = {"conflict": (0, "reply-2"), "duplicate": (1, "reply-1")}.get(
        refused, (-1, "other-start")
    )
    attempt = Commit(
        saga_id="s1",
        name="order",
        status="compensating",
        expected_revision=expected,
        revision=expected + 1,
        state=b"refused",
        dedupe_id=dedupe,
        history=entry("refused"),
        outbox=[outbox("s1", "m-refused")],
        timers_due={"retry:b:action:2": T0 + timedelta(seconds=1)},
        timers_cancelled=["timeout:a:action:1"],
    )
    result = await store.commit(attempt)
    assert result == ("duplicate" if refused == "duplicate" else "conflict")
    assert await _everything(store, ns) == before


def pinned(saga_id: str, name: str, version: int, status: str = "running") -> bytes:
    """A stored state as the runtime writes it (the store reads its name and version)."""
    state = {"saga_id": saga_id, "name": name, "version": version, "status": status}
    return msgspec.json.encode({**state, "revision": 0, "data": {}, "steps": {}})


async def test_versions_in_flight_count_the_sagas_not_ended_by_name_and_version(
    store: Any,
) -> None:
    assert await store.versions_in_flight() == {}
    for saga_id, name, version, status in [
        ("a", "order", 1, "running"),
        ("b", "order", 1, "compensating"),
        ("c", "order", 2, "running"),
        ("d", "refund", 1, "running"),
        ("e", "order", 3, "completed"),  # ended: its version may go
        ("f", "order", 4, "failed"),
    ]:
        state = pinned(saga_id, name, version, status)
        made = commit(saga_id, status=status)
        assert await store.commit(msgspec.structs.replace(made, name=name, state=state)) == (
            "committed"
        )
    assert await store.versions_in_flight() == {("order", 1): 2, ("order", 2): 1, ("refund", 1): 1}
    # A saga that ends leaves the count.
    ended = commit("c", expected=0, dedupe="d1", status="completed")
    await store.commit(msgspec.structs.replace(ended, state=pinned("c", "order", 2, "completed")))
    assert await store.versions_in_flight() == {("order", 1): 2, ("refund", 1): 1}


async def test_finished_lists_the_ended_sagas_since_a_time_oldest_first(store: Any) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    await store.commit(commit("running"))
    for saga_id, status in [("a", "completed"), ("b", "compensated"), ("c", "cancelled")]:
        await store.commit(commit(saga_id))
        await store.commit(commit(saga_id, expected=0, dedupe="end", status=status))
    await store.commit(msgspec.structs.replace(commit("other"), name="refund"))
    await store.commit(
        msgspec.structs.replace(
            commit("other", expected=0, dedupe="end", status="failed"), name="refund"
        )
    )
    found = await store.finished(before)
    assert sorted(saga_id for saga_id, _ in found) == ["a", "b", "c", "other"]
    times = [at for _, at in found]
    assert times == sorted(times) and all(at >= before for at in times)
    assert sorted(s for s, _ in await store.finished(before, names={"order"})) == ["a", "b", "c"]
    assert len(await store.finished(before, limit=2)) == 2
    assert await store.finished(datetime.now(UTC) + timedelta(hours=1)) == []


async def test_started_pages_newest_first_and_a_transition_does_not_move_a_saga(
    store: Any,
) -> None:
    for saga_id in ("a", "b", "c", "d", "e"):
        await store.commit(commit(saga_id))
    everything = await store.started(limit=10)
    ids = [saga_id for saga_id, _at in everything]
    assert sorted(ids) == ["a", "b", "c", "d", "e"]
    order = [(at, saga_id) for saga_id, at in everything]
    assert order == sorted(order, reverse=True)  # newest first, ties by id
    # A transition of the first saga listed keeps its place.
    await store.commit(commit(ids[0], expected=0, dedupe="d1", status="completed"))
    first = await store.started(limit=2)
    rest = await store.started(before=(first[-1][1], first[-1][0]), limit=10)
    assert [s for s, _ in first] + [s for s, _ in rest] == ids
    assert await store.started(before=(rest[-1][1], rest[-1][0]), limit=10) == []
