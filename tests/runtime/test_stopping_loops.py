"""Background loops stop when asked, even when a cancel is lost on the way.

On Python 3.11 ``asyncio.wait_for`` swallows a cancel that lands in the loop turn
in which its inner result arrived, and redis-py sends every command through
``wait_for``. A loop around such a call, cancelled once, can go on for ever: a
coordinator's shutdown once hung that way in the metrics sampler. The loops here
make the same real ``wait_for`` calls, and each is stopped at every phase of
one round, where one of them loses a plain cancel on 3.11.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from coordinator._tasks import stop_task
from coordinator.adapters.redis import RedisClock
from coordinator.telemetry import SagaMetrics, StoreSampler

PHASES = range(12)  # loop turns before the stop: a round of the loops below is ~4
STOPPED_WITHIN = 5.0  # seconds; a lost cancel never ends at all


async def a_redis_call() -> None:
    """What redis-py does for each command's write: an inner task under wait_for."""
    await asyncio.wait_for(asyncio.sleep(0), timeout=5)


async def at_every_phase(
    start: Callable[[], Awaitable[Any]], stop: Callable[[Any], Coroutine[Any, Any, None]]
) -> None:
    for phase in PHASES:
        running = await start()
        for _ in range(phase):
            await asyncio.sleep(0)
        stopping = asyncio.create_task(stop(running))
        await asyncio.wait([stopping], timeout=STOPPED_WITHIN)
        if not stopping.done():
            # The old stop waits for ever and swallows its own cancel too: the
            # loop is ended from here, so that the failure is reported, not hung.
            loop = getattr(running, "_task", running)
            while not loop.done():
                loop.cancel()
                await asyncio.sleep(0.01)
            await asyncio.gather(stopping, return_exceptions=True)
            pytest.fail(f"still running {STOPPED_WITHIN:g} s after stop() at phase {phase}")
        await stopping


async def test_stop_task_ends_a_loop_whose_cancel_is_swallowed() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await a_redis_call()
            rounds += 1
            await asyncio.sleep(0.001)  # as the loops do between rounds

    async def start() -> asyncio.Task[None]:
        return asyncio.create_task(loop())

    async def stop(task: asyncio.Task[None]) -> None:
        await stop_task(task)
        assert task.done()

    await at_every_phase(start, stop)
    assert rounds > 0, "the loop ran between its stops"


async def test_a_plain_cancel_is_lost_here() -> None:
    """The premise of the tests above, on this Python: one cancel may not end the loop."""
    lost = 0
    for phase in PHASES:

        async def loop() -> None:
            while True:
                await a_redis_call()

        task = asyncio.create_task(loop())
        for _ in range(phase):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task], timeout=0.2)
        if not task.done():
            lost += 1
        await stop_task(task)
    if sys.version_info < (3, 12):
        assert lost > 0, "asyncio.wait_for on 3.11 loses a cancel in some phase"
    else:
        assert lost == 0


async def test_the_metrics_sampler_stops() -> None:
    class Store:
        async def counts(self, *_: Any) -> Any:
            await a_redis_call()
            raise RuntimeError("no counts here")  # the sampler keeps going

    metrics = SagaMetrics(MeterProvider().get_meter("test"))

    async def start() -> StoreSampler:
        sampler = StoreSampler(Store(), metrics, names=["n"], services=["s"], interval=timedelta(0))
        sampler.start()
        return sampler

    async def stop(sampler: StoreSampler) -> None:
        await sampler.stop()

    await at_every_phase(start, stop)


async def test_the_redis_clock_stops() -> None:
    class Redis:
        async def time(self) -> tuple[int, int]:
            await a_redis_call()
            return 1_800_000_000, 0

    async def start() -> RedisClock:
        clock = RedisClock(Redis(), refresh=0.0)  # type: ignore[arg-type]
        await clock.start()
        return clock

    async def stop(clock: RedisClock) -> None:
        await clock.stop()

    await at_every_phase(start, stop)
