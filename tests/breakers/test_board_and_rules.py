"""Unit tests of the breakers' pieces: the feed rules, the snapshot storage under
pybreaker, and the board's view (services down, probes, the queue to the store)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

import pybreaker
import pytest
from breaker_support import definition
from hypothesis import given
from hypothesis import strategies as st

from coordinator.adapters.memory import MemoryBreakerStore, MemorySagaStore, VirtualClock
from coordinator.breakers import BreakerBoard, SnapshotStorage, policies
from coordinator.core import (
    Decision,
    StepCompleted,
    StepFailed,
    TimerFired,
    decide,
    start,
)
from coordinator.core import Start as StartInput
from coordinator.ports import BreakerPolicy, BreakerSnapshot
from coordinator.runtime._health import outcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFN = definition(timeout=timedelta(seconds=5), attempts=3)


def charged() -> Decision[object]:
    """A saga whose charge (pay) is out, attempt 1."""
    d = start(DEFN, StartInput(saga_id="s", data=DEFN.data_type(order_id="s"), at=T0))
    return decide(
        DEFN,
        d.state,
        StepCompleted(message_id="r", step="reserve", kind="action", attempt=1, at=T0),
    )


def failed(error_type: str, retryable: bool) -> StepFailed:
    return StepFailed(
        message_id="f",
        step="charge",
        kind="action",
        attempt=1,
        error_type=error_type,
        error_message="x",
        retryable=retryable,
        at=T0,
    )


# -- the feed rules ----------------------------------------------------------------------


def test_a_retryable_failure_and_a_timeout_count_as_failures() -> None:
    state = charged().state
    inp = failed("Unavailable", True)
    assert outcome(DEFN, inp, decide(DEFN, state, inp)) == ("pay", False)
    timer = TimerFired(timer="timeout:charge:action:1", at=T0 + timedelta(seconds=5))
    assert outcome(DEFN, timer, decide(DEFN, state, timer)) == ("pay", False)


def test_a_success_counts_as_a_success() -> None:
    state = charged().state
    inp = StepCompleted(message_id="c", step="charge", kind="action", attempt=1, at=T0)
    assert outcome(DEFN, inp, decide(DEFN, state, inp)) == ("pay", True)


@given(
    error_type=st.sampled_from(["Declined", "Unavailable", "Other"]),
    retryable=st.booleans(),
)
def test_a_business_refusal_never_counts_as_a_failure(error_type: str, retryable: bool) -> None:
    inp = failed(error_type, retryable)
    fed = outcome(DEFN, inp, decide(DEFN, charged().state, inp))
    business = not retryable or error_type == "Declined"
    assert fed == ("pay", business)


def test_what_the_core_ignored_is_not_counted() -> None:
    state = charged().state
    late = failed("Unavailable", True)
    once = decide(DEFN, state, late)
    # The same failure again (a duplicate), and a stale timeout, change nothing.
    assert outcome(DEFN, late, decide(DEFN, once.state, late)) is None
    stale = TimerFired(timer="timeout:charge:action:1", at=T0)
    assert outcome(DEFN, stale, decide(DEFN, once.state, stale)) is None
    # A deadline or a retry timer is no outcome of a command.
    retry = TimerFired(timer="retry:charge:action:2", at=T0 + timedelta(minutes=1))
    assert outcome(DEFN, retry, decide(DEFN, once.state, retry)) is None


# -- pybreaker on the snapshot -----------------------------------------------------------


def test_pybreaker_counts_and_trips_on_the_local_copy_only() -> None:
    storage = SnapshotStorage("pay")
    breaker = pybreaker.CircuitBreaker(fail_max=2, state_storage=storage, name="pay")
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 1)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: 1 / 0)
    assert breaker.current_state == "open"
    # The store's answer wins: another replica's success had reset the count.
    storage.install(BreakerSnapshot(service="pay", state="closed", failures=1))
    assert breaker.state.name == "closed"  # pybreaker notices, runs its entry action
    storage.install(BreakerSnapshot(service="pay", state="closed", failures=1))
    assert breaker.fail_counter == 1


# -- the board -----------------------------------------------------------------------------


def board(clock: VirtualClock, store: MemoryBreakerStore) -> BreakerBoard:
    by_service, default = policies([DEFN])
    return BreakerBoard(
        store,
        MemorySagaStore(),
        clock=clock,
        services=by_service,
        policies=by_service,
        default=default,
    )


async def test_an_open_breaker_is_down_at_once_here_and_at_the_next_tick_elsewhere() -> None:
    clock, store = VirtualClock(), MemoryBreakerStore()
    here, there = board(clock, store), board(clock, store)
    for _ in range(3):
        here.record("pay", False)
    assert here.services_down() == {"pay"}  # before any round trip
    assert there.services_down() == frozenset()
    await here.tick()
    await there.tick()
    assert there.services_down() == {"pay"}


async def test_an_answer_handled_on_a_stale_open_copy_still_reaches_the_store() -> None:
    clock = VirtualClock()
    store = MemoryBreakerStore(clock=clock)
    policy = BreakerPolicy(fail_max=1, reset_timeout=timedelta(seconds=30))
    await store.apply("pay", "failure", policy)
    stale = board(clock, store)
    await stale.tick()
    assert stale.services_down() == {"pay"}
    clock.advance(timedelta(seconds=31))
    await store.apply("pay", "probe", policy)  # another replica half-opened it, probing
    stale.record("pay", False)  # the probe's failure, on a copy still saying open
    await stale.tick()
    assert (await store.snapshot(["pay"]))["pay"].state == "open"
    assert (await store.events("pay"))[0].reason == "a probe failed"


async def test_successes_of_a_healthy_service_cost_no_round_trip() -> None:
    clock, store = VirtualClock(), MemoryBreakerStore()
    b = board(clock, store)
    for _ in range(100):
        b.record("pay", True)
    assert b._queue == []


class _SlowSnapshots(MemoryBreakerStore):
    """A store whose snapshot answers only when the test lets it: the snapshot was taken
    before the outcomes the test records while it waits."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock=clock)
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.answer.set()

    async def snapshot(self, services: Collection[str]) -> Mapping[str, BreakerSnapshot]:
        taken = await super().snapshot(services)
        self.asked.set()
        await self.answer.wait()
        return taken


async def test_a_refresh_taken_before_a_trip_does_not_close_the_breaker_again() -> None:
    # The race of a real replica: the refresh's round trip is in flight when the third
    # failure trips the breaker here; the stale answer must not let the next command out.
    clock = VirtualClock()
    store = _SlowSnapshots(clock)
    b = board(clock, store)
    for _ in range(2):
        b.record("pay", False)
    await b.tick()  # the store counts two failures
    store.asked.clear()
    store.answer.clear()
    refresh = asyncio.create_task(b.tick())
    await store.asked.wait()
    b.record("pay", False)  # the third, while the refresh is on its way
    assert b.services_down() == {"pay"}
    store.answer.set()
    await refresh
    assert b.services_down() == {"pay"}  # the stale snapshot said closed, 2 failures
    await b.tick()  # the failure reaches the store, which opens it too
    assert (await store.snapshot(["pay"]))["pay"].state == "open"
    assert b.services_down() == {"pay"}
