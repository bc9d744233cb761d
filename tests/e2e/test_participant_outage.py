"""A participant worker whose Redis goes away (SIGKILL) and comes back on its
AOF: the commands that arrive meanwhile wait for it, none is requeued or
dead-lettered, and each handler runs once."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

from throwaway import RedisServer

from contracts import DEFAULT_CODEC, TaskCompleted
from coordinator.adapters.memory._transport import MemoryTransport
from coordinator.adapters.redis import RedisIdempotencyStore, connect_redis
from coordinator.ports import Delivery
from participants import ParticipantWorker

sys.path.insert(0, str(Path(__file__).parent.parent / "participants"))
from test_participant_worker import Inventory, command

# The outage is a scenario length, not a synchronisation: commands arrive during it.
OUTAGE_SECONDS = 2.0


async def test_commands_wait_for_a_redis_that_was_killed_and_restarted(
    redis_server: RedisServer,
) -> None:
    inventory = Inventory(stock={"A-1": 1000})
    redis = connect_redis(redis_server.url)
    store = RedisIdempotencyStore(redis, namespace="outage", ttl=timedelta(hours=1))
    memory = MemoryTransport(delivery_limit=5)
    await memory.declare("replies", "events", "#")
    worker = ParticipantWorker(inventory.service(), transport=memory, idempotency=store)
    counts: list[int] = []

    async def observed(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        await worker.handle(delivery)

    async def send(step: str) -> None:
        cmd = command(step=step)
        body = DEFAULT_CODEC.encode(cmd)
        await memory.publish("commands", cmd.routing_key, body, message_id=cmd.message_id)

    try:
        await memory.subscribe("inventory.commands", "commands", "inventory.*", observed)
        for i in range(5):
            await send(f"before-{i}")
        await memory.drain()
        assert len(memory.ready("replies")) == 5

        redis_server.kill()
        for i in range(5):
            await send(f"during-{i}")
        await asyncio.sleep(OUTAGE_SECONDS)
        assert len(memory.ready("replies")) == 5, "nothing can be answered without Redis"
        began = time.monotonic()
        await redis_server.start()
        await asyncio.wait_for(memory.drain(), 30)
        print(f"answered {time.monotonic() - began:.1f}s after Redis was restarted")
    finally:
        await memory.close()
        await redis.aclose()

    assert memory.dead_letters == []
    assert counts == [1] * 10, "every command held through the outage, none requeued"
    replies = [DEFAULT_CODEC.decode_inbound(b) for b in memory.ready("replies")]
    assert len(replies) == 10
    assert all(isinstance(r, TaskCompleted) for r in replies)
    assert len(inventory.effects) == 10
