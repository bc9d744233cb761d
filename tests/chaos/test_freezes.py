"""Processes stopped with SIGSTOP and continued: a frozen VM, a long GC pause.
A frozen process keeps its connections and its unacknowledged deliveries, and
wakes up with stale leases and a stale cache."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest
from procs import Deployment
from workload import Run, check_at_rest, make_orders, mix_of

from coordinator.service import open_client

MIX = {"declined": 0.15, "out_of_stock": 0.02, "flaky": 0.10, "large": 0.10}
LEASE = 5.0  # Settings.participant_lease


@pytest.mark.timeout(300)
async def test_participant_frozen_inside_a_handler(deploy: Callable[..., Deployment]) -> None:
    """One of two participant workers is frozen while a handler runs, for three
    times its lease, then continued; the other worker goes on meanwhile.

    The frozen worker's hold on its keys lapses: the coordinator's retries
    (attempts of 5 s) reach the other worker, which runs the held commands; the
    continued worker then finishes its handlers late. Eight attempts span far
    more than the freeze and the lease, so the input alone decides every
    outcome. The handlers of the held keys may run twice (their effects are
    idempotent by key); no action may be applied after its compensation.
    """
    d = deploy(step_timeout=5, step_attempts=8)
    d.coordinator()
    d.coordinator()
    frozen = d.participant()
    d.participant()
    await d.wait_ready(coordinators=2, participants=2)

    orders = make_orders(mix_of(120, **MIX), prefix="pstop")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        starting = asyncio.create_task(run.start_all(pace=0.08))
        await run.wait_until(20, timeout=120)
        held = await d.freeze(frozen, inside_handler=True)
        at = run.finished()
        await asyncio.sleep(3 * LEASE)  # the length of the freeze
        await run.refresh()  # read from Redis directly, not through any proxy
        during = run.finished() - at
        frozen.send(signal.SIGCONT)
        print(f"{frozen.name} frozen 15 s holding {held}; {during} sagas ended meanwhile")
        await starting
        took = await run.wait_all(timeout=200)
        print(f"{len(orders)} sagas ended in {took:.1f} s")
        assert during > 0  # the other worker went on
        await check_at_rest(d, client, run, may_rerun=held)


@pytest.mark.timeout(360)
async def test_coordinator_frozen_under_load(deploy: Callable[..., Deployment]) -> None:
    """One of three replicas is frozen for 30 s under load, then continued: it
    held up to a prefetch of unacknowledged deliveries, its cached saga states
    are stale, and the other replicas went on meanwhile (retries of steps whose
    replies it sat on reach them). What it then does with what it held must
    not move a saga backwards or apply anything twice.

    SAGA_HEARTBEAT=10 asks for a 10 s AMQP heartbeat, so that the broker gives
    a frozen replica's deliveries back within about 20 s (a setting other
    releases ignore, as unknown SAGA_ variables are). Steps get 10 s attempts,
    five of them: they span more than the freeze, so no step gives up because
    of it, and the input alone decides every outcome.
    """
    d = deploy(step_timeout=10, step_attempts=5, env={"SAGA_HEARTBEAT": "10"})
    frozen = d.coordinator()
    d.coordinator()
    d.coordinator()
    d.participant()
    await d.wait_ready(coordinators=3, participants=1)

    orders = make_orders(mix_of(200, **MIX), prefix="cstop")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        starting = asyncio.create_task(run.start_all(pace=0.1))
        await run.wait_until(30, timeout=120)
        frozen.send(signal.SIGSTOP)
        at = run.finished()
        began = time.monotonic()
        await asyncio.sleep(30)  # the length of the freeze
        await run.refresh()  # read from Redis directly, not through any proxy
        during = run.finished() - at
        frozen.send(signal.SIGCONT)
        print(f"{frozen.name} frozen 30 s from {at} ended; {during} ended meanwhile")
        await starting
        await run.wait_all(timeout=240)
        print(f"all ended {time.monotonic() - began:.1f} s after the freeze began")
        assert during > 0  # the other replicas went on
        await check_at_rest(d, client, run)
