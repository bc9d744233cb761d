"""End to end on the shared RabbitMQ and Redis: coordinator replicas and the
example participants as real processes, many sagas at once, every invariant
checked at rest."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from procs import Deployment, poll
from workload import Run, check_at_rest, history_inputs, make_orders, mix_of

from coordinator.service import open_client

# The full mix is 500 sagas; a smaller machine (or a quick local run) can take fewer.
SAGAS = int(os.environ.get("SAGA_E2E_SAGAS", "500"))


@pytest.mark.timeout(300)
async def test_end_to_end_mixed_outcomes(deploy: Callable[..., Deployment]) -> None:
    d = deploy()
    d.coordinator()
    d.coordinator()
    d.participant()
    await d.wait_ready(coordinators=2, participants=1)

    # A slow booking holds two of the shipping worker's prefetch slots for
    # 60 s: the sleeping first attempt and the retry waiting on its key. So
    # only a few of those: more would starve every other booking.
    mix = mix_of(SAGAS, declined=0.13, out_of_stock=0.02, flaky=0.10, large=0.10)
    mix["slow"] = min(4, mix["plain"])
    mix["plain"] -= mix["slow"]
    orders = make_orders(mix, prefix="mixed")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        await run.start_all()
        took = await run.wait_all(timeout=240)
        print(f"{len(orders)} sagas {mix} ended in {took:.1f} s")
        await check_at_rest(d, client, run)


@pytest.mark.timeout(300)
async def test_sigterm_drains(deploy: Callable[..., Deployment]) -> None:
    """A replica stopped under load exits 0 within seconds and loses nothing.

    Four replicas are stopped one after the other while sagas run (one more
    is started each time, so two are always up): each must finish its
    in-flight transitions and exit 0 within 10 s.
    """
    d = deploy()
    d.coordinator()
    d.coordinator()
    d.participant()
    await d.wait_ready(coordinators=2, participants=1)

    orders = make_orders(mix_of(240, declined=0.15, flaky=0.10, large=0.10), prefix="term")
    stopped: list[tuple[str, int | None, float]] = []
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        starting = asyncio.create_task(run.start_all(pace=0.04))
        for share in (0.15, 0.35, 0.55, 0.75):
            await run.wait_until(int(len(orders) * share), timeout=120)
            victim = d.coordinators[0]
            victim.send(signal.SIGTERM)
            began = time.monotonic()
            code = await victim.wait(DRAIN_BOUND)
            stopped.append((victim.name, code, time.monotonic() - began))
            if code is None:
                victim.kill()  # hung: the assertion below reports it
            d.coordinator()
            # The replacement is drained in its turn: it must have started (and have
            # its SIGTERM handler) by then, which a loaded machine can take seconds for.
            await d.wait_ready(coordinators=2, participants=1)
        await starting
        took = await run.wait_all(timeout=180)
        print(f"{len(orders)} sagas ended in {took:.1f} s; stopped: {stopped}")
        await check_at_rest(d, client, run)

    # And the replicas left, now idle, stop as promptly.
    for victim in d.coordinators:
        victim.send(signal.SIGTERM)
        began = time.monotonic()
        code = await victim.wait(DRAIN_BOUND)
        stopped.append((victim.name, code, time.monotonic() - began))
    hung = [(name, f"{took:.1f} s") for name, code, took in stopped if code is None]
    assert not hung, (
        f"replicas still running {DRAIN_BOUND:.0f} s after SIGTERM (killed): {hung}; all: {stopped}"
    )
    assert all(code == 0 for _, code, _ in stopped), f"SIGTERM must exit 0: {stopped}"


# A drain finishes the transitions in flight (a few Redis round trips each) and
# stops the loops: well under a second when idle, a few under load. The bound
# only tells "hung" from "slow" on a busy 2-core machine, so it is generous;
# the measured times are printed.
DRAIN_BOUND = 30.0

# The downtime's first timeout fires on the first timer poll of a coordinator
# that is back: ``back_at`` is taken after wait_ready saw it (up to a poll
# late), and a busy machine can delay that first poll by seconds. The window
# tells "fired when the coordinators came back" from "fired at its due time
# during the downtime" (15 s earlier) or "much later"; it is not a latency check.
BACK_WINDOW = 10.0


@pytest.mark.timeout(300)
async def test_timers_survive_downtime(deploy: Callable[..., Deployment]) -> None:
    """Step timeouts that fall due while every coordinator is down fire once each,
    when one comes back; every saga compensates and the late bookings are refused."""
    # Twelve shipping timeouts at once are what opens shipping's circuit breaker,
    # which would park the second attempts this test counts the timers of: the
    # breakers are off here (tests/e2e/test_breakers.py is where they are tested).
    d = deploy(env={"SAGA_BREAKERS_ENABLED": "false"})
    d.coordinator()
    d.coordinator()
    # Each slow booking holds two of a worker's shipping slots for 60 s (see
    # above): two participant processes, so that the cancellations always get one.
    d.participant()
    d.participant()
    await d.wait_ready(coordinators=2, participants=2)

    orders = make_orders({"slow": 12}, prefix="timer")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        await run.start_all()

        async def all_shipping() -> bool | None:
            await run.refresh()
            ship = [run.states.get(o.id, {}).get("steps", {}).get("ship", {}) for o in orders]
            dispatched = all(
                s.get("status") == "dispatched" and s.get("attempt") == 1 for s in ship
            )
            return True if dispatched else None

        await poll("every booking to be dispatched", all_shipping, timeout=60)

        down_at = datetime.now(UTC)
        codes = await asyncio.gather(*(p.stop(timeout=10) for p in d.coordinators))
        print(f"coordinators stopped with {codes}")
        await asyncio.sleep(15)  # the downtime itself: longer than the 10 s step timeout
        d.coordinator()
        await d.wait_ready(coordinators=1, participants=2)
        back_at = datetime.now(UTC)
        d.coordinator()  # a second replica polls the same timers: still once each

        took = await run.wait_all(timeout=90)
        print(f"{len(orders)} slow sagas ended in {took:.1f} s (down {back_at - down_at})")

        problems: list[str] = []
        for order in orders:
            entries = history_inputs(await client.history(order.id))
            fired = Counter(
                inp["timer"]
                for inp, changed, _ in entries
                if inp.get("type") == "TimerFired" and changed
            )
            for timer in ("timeout:ship:action:1", "timeout:ship:action:2"):
                if fired[timer] != 1:
                    problems.append(
                        f"{order.id}: {timer} fired {fired[timer]} times: {dict(fired)}"
                    )
            first = [
                datetime.fromisoformat(inp["at"])
                for inp, changed, _ in entries
                if inp.get("type") == "TimerFired"
                and changed
                and inp["timer"] == "timeout:ship:action:1"
            ]
            back = back_at.timestamp()
            if first and not back - 5 < first[0].timestamp() < back + BACK_WINDOW:
                problems.append(
                    f"{order.id}: the downtime's timeout fired at {first[0]}, back at {back_at}"
                )
        assert not problems, "\n".join(problems)

        # The first bookings answer 60 s after they were sent; their cancellations
        # waited for them (the SDK fences a compensation behind its running action)
        # and undid them after. Their replies are recorded as late.
        async def late_replies() -> bool | None:
            for order in orders:
                entries = history_inputs(await client.history(order.id))
                late = [
                    inp
                    for inp, changed, _ in entries
                    if inp.get("type") in ("StepCompleted", "StepFailed")
                    and inp.get("step") == "ship"
                    and not changed
                ]
                if not late:
                    return None
            return True

        await poll("the late bookings' replies", late_replies, timeout=75, interval=1)
        await check_at_rest(d, client, run)
