"""Why a coordinator sometimes ignores SIGTERM, pinned without processes.

``saga run`` stops by cancelling its timer and relay loops (``Coordinator.stop``)
and waiting for them. redis-py 8.1's asyncio client can swallow a
cancellation that lands while a command is in flight (the command returns
normally, the task stays "cancelling"; cf. redis/redis-py#2028, #2551), so the
loop goes round again and ``stop`` waits forever. In the end-to-end runs this
showed as a replica still running 10 s after SIGTERM (see test_sigterm_drains).

Here the coordinator runs in this process on the real Redis with an
in-memory transport, and is stopped within 5 ms of starting, while its loops'
first polls are in flight (under load they are in flight much of the time):
every stop must return within a few seconds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from servers import connect_redis, drop_namespace, namespace

from coordinator import Coordinator
from coordinator.adapters.memory import MemoryTransport, SystemClock
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import saga


@pytest.fixture
async def redis_ns() -> AsyncIterator[tuple[Redis, str]]:
    client = await connect_redis()
    ns = namespace()
    yield client, ns
    await drop_namespace(client, ns)
    await client.aclose()


@pytest.mark.timeout(120)
async def test_coordinator_stop_returns_while_its_loops_use_redis(
    redis_ns: tuple[Redis, str],
) -> None:
    client, ns = redis_ns
    store = RedisSagaStore(client, namespace=ns)
    rng = random.Random(3)
    hung: list[str] = []
    for attempt in range(20):
        coordinator = Coordinator(
            [saga],
            transport=MemoryTransport(),
            store=store,
            clock=SystemClock(),
            timer_interval=timedelta(seconds=0.1),
        )
        await coordinator.start()
        await asyncio.sleep(rng.random() * 0.005)  # while the loops' first polls run
        stopping = asyncio.create_task(coordinator.stop())
        done, _ = await asyncio.wait([stopping], timeout=5)
        if not done:
            loops = [repr(t) for t in asyncio.all_tasks() if t.get_name().startswith("saga-")]
            hung.append(f"stop #{attempt} still waiting after 5 s; loops: {loops}")
            # Leave nothing running behind the test: cancel until they give up.
            for _ in range(50):
                for task in asyncio.all_tasks():
                    if task.get_name().startswith("saga-") or task is stopping:
                        task.cancel()
                await asyncio.sleep(0.05)
                if stopping.done():
                    break
            break
    assert not hung, "\n".join(hung)
