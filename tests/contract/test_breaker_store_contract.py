"""The BreakerStore contract, against memory and real Redis: the same rules in both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from servers import connect_redis, drop_namespace, namespace

from coordinator.adapters.memory import MemoryBreakerStore, MemorySagaStore, VirtualClock
from coordinator.adapters.redis import RedisBreakerStore, RedisSagaStore
from coordinator.ports import BreakerPolicy, BreakerStore, Commit, HistoryEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# A short reset timeout: the Redis store runs on Redis TIME, which the test cannot move.
POLICY = BreakerPolicy(
    fail_max=3,
    reset_timeout=timedelta(milliseconds=300),
    success_threshold=2,
    probes=1,
    probe_lease=timedelta(milliseconds=300),
)


class Kit:
    def __init__(self, store: BreakerStore, clock: VirtualClock | None) -> None:
        self.store = store
        self.clock = clock

    async def wait(self, delta: timedelta) -> None:
        if self.clock is not None:
            self.clock.advance(delta)
        else:
            await asyncio.sleep(delta.total_seconds())


@pytest.fixture(params=["memory", "redis"])
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    if request.param == "memory":
        clock = VirtualClock()
        yield Kit(MemoryBreakerStore(clock=clock), clock)
        return
    redis = await connect_redis()
    ns = namespace()
    try:
        yield Kit(RedisBreakerStore(redis, namespace=ns), None)
    finally:
        await drop_namespace(redis, ns)
        await redis.aclose()


async def open_it(kit: Kit) -> None:
    for _ in range(POLICY.fail_max):
        await kit.store.apply("pay", "failure", POLICY)


async def test_a_new_breaker_is_closed_and_known_once_acted_on(kit: Kit) -> None:
    snap = (await kit.store.snapshot(["pay"]))["pay"]
    assert (snap.state, snap.failures, snap.opened_at) == ("closed", 0, None)
    assert await kit.store.known() == []
    assert (await kit.store.apply("pay", "refresh", POLICY)).state == "closed"
    assert await kit.store.known() == ["pay"]


async def test_fail_max_consecutive_failures_open_it_and_a_success_resets_the_count(
    kit: Kit,
) -> None:
    await kit.store.apply("pay", "failure", POLICY)
    await kit.store.apply("pay", "failure", POLICY)
    snap = await kit.store.apply("pay", "success", POLICY)
    assert (snap.state, snap.failures) == ("closed", 0)
    await kit.store.apply("pay", "failure", POLICY)
    await kit.store.apply("pay", "failure", POLICY)
    snap = await kit.store.apply("pay", "failure", POLICY)
    assert snap.state == "open"
    assert snap.opened_at is not None
    assert snap.half_open_at == snap.opened_at + POLICY.reset_timeout
    stored = (await kit.store.snapshot(["pay"]))["pay"]
    assert (stored.state, stored.half_open_at) == ("open", snap.half_open_at)
    [event] = await kit.store.events("pay")
    assert (event.old, event.new, event.reason) == ("closed", "open", "3 consecutive failures")
    # Failures while open are late replies: ignored.
    again = await kit.store.apply("pay", "failure", POLICY)
    assert (again.state, again.opened_at) == ("open", snap.opened_at)
    assert len(await kit.store.events("pay")) == 1


async def test_it_half_opens_after_the_reset_timeout_and_gives_one_probe(kit: Kit) -> None:
    await open_it(kit)
    assert (await kit.store.apply("pay", "probe", POLICY)).granted is False
    await kit.wait(POLICY.reset_timeout + timedelta(milliseconds=50))
    snap = await kit.store.apply("pay", "probe", POLICY)
    assert (snap.state, snap.granted, snap.probes) == ("half-open", True, 1)
    assert (await kit.store.apply("pay", "probe", POLICY)).granted is False
    # success_threshold=2: one success is not enough.
    assert (await kit.store.apply("pay", "success", POLICY)).state == "half-open"
    closed = await kit.store.apply("pay", "success", POLICY)
    assert (closed.state, closed.failures, closed.successes) == ("closed", 0, 0)
    assert [(e.old, e.new) for e in await kit.store.events("pay")] == [
        ("half-open", "closed"),
        ("open", "half-open"),
        ("closed", "open"),
    ]


async def test_a_failed_probe_reopens_it_and_an_unused_probe_is_given_back(kit: Kit) -> None:
    await open_it(kit)
    await kit.wait(POLICY.reset_timeout + timedelta(milliseconds=50))
    assert (await kit.store.apply("pay", "probe", POLICY)).granted
    # Never answered: after the probe lease another one may go.
    await kit.wait(POLICY.probe_lease + timedelta(milliseconds=50))
    assert (await kit.store.apply("pay", "probe", POLICY)).granted
    snap = await kit.store.apply("pay", "failure", POLICY)
    assert snap.state == "open"
    assert (await kit.store.events("pay"))[0].reason == "a probe failed"


async def test_concurrent_failures_trip_it_once(kit: Kit) -> None:
    await asyncio.gather(*(kit.store.apply("pay", "failure", POLICY) for _ in range(10)))
    assert [(e.old, e.new) for e in await kit.store.events("pay")] == [("closed", "open")]


async def test_concurrent_probes_are_granted_within_the_budget(kit: Kit) -> None:
    await open_it(kit)
    await kit.wait(POLICY.reset_timeout + timedelta(milliseconds=50))
    got = await asyncio.gather(*(kit.store.apply("pay", "probe", POLICY) for _ in range(10)))
    assert sum(s.granted for s in got) == POLICY.probes


async def test_an_operator_opens_holds_closes_and_resets_with_who_and_why(kit: Kit) -> None:
    snap = await kit.store.apply("pay", "open", POLICY, reason="maintenance", by="ana")
    assert (snap.state, snap.held) == ("open", True)
    await kit.wait(POLICY.reset_timeout * 2)
    # Held open: it does not half-open by itself.
    assert (await kit.store.apply("pay", "refresh", POLICY)).state == "open"
    snap = await kit.store.apply("pay", "reset", POLICY, reason="back to auto", by="ana")
    assert (snap.state, snap.held) == ("open", False)
    await kit.wait(POLICY.reset_timeout + timedelta(milliseconds=50))
    assert (await kit.store.apply("pay", "refresh", POLICY)).state == "half-open"
    snap = await kit.store.apply("pay", "close", POLICY, reason="fixed", by="bo")
    assert snap.state == "closed"
    events = await kit.store.events("pay")
    assert [(e.new, e.reason, e.by) for e in events] == [
        ("closed", "fixed", "bo"),
        ("half-open", "reset timeout elapsed", ""),
        ("open", "back to auto", "ana"),
        ("open", "maintenance", "ana"),
    ]


async def test_the_event_log_is_bounded(kit: Kit) -> None:
    for i in range(105):
        await kit.store.apply("pay", "close", POLICY, reason=f"r{i}")
    events = await kit.store.events("pay", limit=1000)
    assert len(events) == 100
    assert events[0].reason == "r104"


async def test_a_lease_has_one_holder_until_it_expires(kit: Kit) -> None:
    ttl = timedelta(milliseconds=200)
    assert await kit.store.lease("sweep:pay", "a", ttl)
    assert await kit.store.lease("sweep:pay", "a", ttl)
    assert not await kit.store.lease("sweep:pay", "b", ttl)
    await kit.wait(ttl + timedelta(milliseconds=50))
    assert await kit.store.lease("sweep:pay", "b", ttl)


# -- the parked index the saga store keeps with each commit -------------------------------


@pytest.fixture(params=["memory", "redis"])
async def saga_store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemorySagaStore()
        return
    redis = await connect_redis()
    ns = namespace()
    try:
        yield RedisSagaStore(redis, namespace=ns, buckets=4)
    finally:
        await drop_namespace(redis, ns)
        await redis.aclose()


def parked_commit(saga_id: str, revision: int, parked: frozenset[str], status: str) -> Commit:
    return Commit(
        saga_id=saga_id,
        name="order",
        status=status,
        expected_revision=revision - 1,
        revision=revision,
        state=b"{}",
        dedupe_id=f"{saga_id}:{revision}",
        history=HistoryEntry(
            at=T0,
            revision=revision,
            input=msgspec.Raw(b"{}"),
            note="n",
            effects=msgspec.Raw(b"[]"),
        ),
        parked=parked,
    )


async def test_the_commit_keeps_the_index_of_parked_sagas_per_service(saga_store: Any) -> None:
    pay, both = frozenset({"pay"}), frozenset({"pay", "ship"})
    for i in range(6):
        assert await saga_store.commit(parked_commit(f"s{i}", 0, pay, "running")) == "committed"
    assert await saga_store.parked_count("pay") == 6
    assert await saga_store.parked("pay", limit=2) == ["s0", "s1"]
    assert await saga_store.parked_count("ship") == 0
    # s0 now waits for ship too; s1 stops waiting; s2 ends.
    await saga_store.commit(parked_commit("s0", 1, both, "running"))
    await saga_store.commit(parked_commit("s1", 1, frozenset(), "running"))
    await saga_store.commit(parked_commit("s2", 1, frozenset(), "completed"))
    assert sorted(await saga_store.parked("pay")) == ["s0", "s3", "s4", "s5"]
    assert await saga_store.parked("ship") == ["s0"]
    # A conflicting or duplicate commit changes no index.
    assert await saga_store.commit(parked_commit("s3", 5, frozenset(), "running")) == "conflict"
    assert await saga_store.parked_count("pay") == 4
