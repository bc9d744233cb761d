"""Circuit breakers through the in-memory harness: the whole runtime on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from breaker_support import Switch, definition, services

from coordinator.testing import Harness, VirtualClock


@pytest.fixture
def switch() -> Switch:
    return Switch()


async def run(h: Harness, n: int, prefix: str = "o") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for saga_id in ids:
        await h.start("brk.order", {"order_id": saga_id}, saga_id=saga_id)
        await h.settle()
    return ids


async def statuses(h: Harness, ids: list[str]) -> dict[str, str]:
    return {i: (await h.state(i)).status for i in ids}


async def breaker_state(h: Harness, service: str = "pay") -> str:
    await h.breakers.tick()
    return (await h.breaker_store.snapshot([service]))[service].state


@pytest.fixture
async def harness(switch: Switch) -> AsyncIterator[Harness]:
    clock = VirtualClock()
    switch.clock = clock
    async with Harness([definition()], services(switch), clock=clock) as h:
        yield h


async def test_a_failing_service_opens_its_breaker_after_fail_max_and_sagas_park(
    harness: Harness, switch: Switch
) -> None:
    switch.mode["pay"] = "failing"
    # Two sagas, two attempts each: the third failure (fail_max=3) opens the breaker.
    ids = await run(harness, 2)
    await harness.advance(timedelta(seconds=5))
    assert await breaker_state(harness) == "open"
    assert switch.received[("pay", "charge")] == 3
    assert "pay" in harness.breakers.services_down()
    # The fourth attempt (the second saga's retry) was not sent: it parked.
    states = [await harness.state(i) for i in ids]
    assert {s.steps["charge"].status for s in states} >= {"awaiting_service"}
    # New sagas park at once, and nothing more reaches the participant while it is open.
    more = await run(harness, 3, prefix="n")
    await harness.advance(timedelta(seconds=10))
    assert switch.received[("pay", "charge")] == 3
    assert await harness.store.parked_count("pay") == 4
    for saga_id in more:
        state = await harness.state(saga_id)
        assert state.steps["charge"].status == "awaiting_service"
        notes = [e.note for e in await harness.history(saga_id)]
        assert any("charge waits: pay is unavailable" in n for n in notes)
    events = await harness.breaker_store.events("pay")
    assert [(e.old, e.new) for e in events] == [("closed", "open")]
    assert events[0].reason == "3 consecutive failures"


async def test_half_open_lets_one_probe_out_and_closing_resumes_every_parked_saga(
    harness: Harness, switch: Switch
) -> None:
    switch.mode["pay"] = "failing"
    ids = await run(harness, 2)
    await harness.advance(timedelta(seconds=5))
    parked = await run(harness, 5, prefix="n")
    await harness.advance(timedelta(seconds=1))
    assert switch.received[("pay", "charge")] == 3
    # Still failing at half-open: exactly one probe goes out, fails, and reopens it.
    await harness.advance(timedelta(seconds=30))
    assert switch.received[("pay", "charge")] == 4
    assert await breaker_state(harness) == "open"
    # Recovered: the next probe succeeds, the breaker closes, every parked saga resumes.
    switch.mode["pay"] = "up"
    await harness.advance(timedelta(seconds=31))
    for saga_id in ids + parked:
        assert (await harness.run_until_done(saga_id)).status in ("completed", "compensated")
    done = await statuses(harness, parked)
    assert set(done.values()) == {"completed"}, done
    assert await harness.store.parked_count("pay") == 0
    assert await breaker_state(harness) == "closed"
    transitions = [(e.old, e.new) for e in reversed(await harness.breaker_store.events("pay"))]
    assert transitions == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    # Every charge applied once, by its idempotency key.
    assert all(n == 1 for n in switch.applied.values())
    resumed = [e.note for e in await harness.history(parked[-1])]
    assert any("pay recovered: resuming charge" in n for n in resumed)


async def test_compensate_policy_fails_the_step_at_once_while_open(switch: Switch) -> None:
    clock = VirtualClock()
    defn = definition(on_unavailable="compensate")
    async with Harness([defn], services(switch), clock=clock) as h:
        switch.mode["pay"] = "failing"
        await run(h, 2)
        await h.advance(timedelta(seconds=5))
        assert await breaker_state(h) == "open"
        before = switch.received[("pay", "charge")]
        ids = await run(h, 4, prefix="n")
        for saga_id in ids:
            state = await h.run_until_done(saga_id, limit=timedelta(seconds=1))
            assert state.status == "compensated"
            assert "circuit open" in (state.reason or "")
        assert switch.received[("pay", "charge")] == before
        assert await h.store.parked_count("pay") == 0


async def test_the_deadline_still_applies_while_parked(switch: Switch) -> None:
    clock = VirtualClock()
    defn = definition(deadline=timedelta(seconds=20), reset_timeout=timedelta(minutes=5))
    async with Harness([defn], services(switch), clock=clock) as h:
        switch.mode["pay"] = "failing"
        await run(h, 2)
        await h.advance(timedelta(seconds=5))
        [saga_id] = await run(h, 1, prefix="late")
        assert (await h.state(saga_id)).steps["charge"].status == "awaiting_service"
        state = await h.run_until_done(saga_id, limit=timedelta(minutes=1))
        assert state.status == "compensated"
        assert "deadline" in (state.reason or "")
        assert state.steps["charge"].status == "abandoned"
        assert await h.store.parked_count("pay") == 0
        assert switch.applied[("stock", "release", saga_id)] == 1


async def test_a_compensation_to_an_open_service_waits_and_runs_on_recovery(
    switch: Switch,
) -> None:
    clock = VirtualClock()
    switch.clock = clock
    # pay first, then stock: stock failing makes the saga refund the charge.
    defn = definition(pay_first=True)
    async with Harness([defn], services(switch), clock=clock) as h:
        switch.mode["stock"] = "silent"  # answers a day later, with a failure
        [saga_id] = await run(h, 1)
        assert switch.applied[("pay", "charge", saga_id)] == 1
        # pay goes down (an operator opens its breaker) before the refund is due.
        switch.mode["pay"] = "failing"
        await h.breaker_store.apply("pay", "open", h.breakers.policy("pay"), reason="test")
        await h.breakers.tick()
        await h.advance(timedelta(days=1, seconds=5))
        state = await h.state(saga_id)
        assert state.status == "compensating"
        assert state.steps["charge"].status == "compensation_awaiting_service"
        assert await h.store.parked_count("pay") == 1
        assert switch.received[("pay", "refund")] == 0
        notes = [e.note for e in await h.history(saga_id)]
        assert any("charge compensation waits: pay is unavailable" in n for n in notes)
        switch.mode["pay"] = "up"
        await h.breaker_store.apply("pay", "close", h.breakers.policy("pay"), reason="test")
        state = await h.run_until_done(saga_id)
        assert state.status == "compensated"
        assert switch.applied[("pay", "refund", saga_id)] == 1


async def test_business_refusals_at_any_rate_never_open_the_breaker(switch: Switch) -> None:
    clock = VirtualClock()
    async with Harness([definition(fail_max=2)], services(switch), clock=clock) as h:
        switch.mode["pay"] = "refusing"
        ids = await run(h, 10)
        for saga_id in ids:
            assert (await h.run_until_done(saga_id)).status == "compensated"
        assert await breaker_state(h) == "closed"
        assert switch.received[("pay", "charge")] == 10
        assert await h.breaker_store.events("pay") == []


async def test_timeouts_open_the_breaker_as_failures_do(switch: Switch) -> None:
    clock = VirtualClock()
    switch.clock = clock
    defn = definition(timeout=timedelta(seconds=2), attempts=1)
    async with Harness([defn], services(switch), clock=clock) as h:
        switch.mode["pay"] = "silent"
        await run(h, 3)
        await h.advance(timedelta(seconds=3))
        assert await breaker_state(h) == "open"
        [event] = await h.breaker_store.events("pay")
        assert event.reason == "3 consecutive failures"


async def test_a_manual_services_down_still_parks_without_the_breakers(switch: Switch) -> None:
    clock = VirtualClock()
    defn = definition()
    async with Harness(
        [defn], services(switch), clock=clock, services_down=frozenset({"pay"}), breakers=False
    ) as h:
        [saga_id] = await run(h, 1)
        assert (await h.state(saga_id)).steps["charge"].status == "awaiting_service"
        h.services_down.clear()
        await h.coordinator.resume_parked("pay")
        assert (await h.run_until_done(saga_id)).status == "completed"
