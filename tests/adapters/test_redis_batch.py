"""The Redis batcher, on the test Redis: one pipeline per loop turn, one reply per caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from coordinator.adapters.redis._batch import Batcher, LuaScript

ECHO_KEY = "return {KEYS[1], ARGV[1]}"


class _CountingRedis(Redis):
    """The test Redis, counting the pipelines and lone commands sent to it."""

    pipelines: list[int]
    singles: int

    def count(self) -> None:
        self.pipelines, self.singles = [], 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> list[Any]:
            self.pipelines.append(len(pipe.command_stack))
            return await execute(raise_on_error=raise_on_error)

        pipe.execute = counted
        return pipe

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.singles += 1
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counting(redis_client: Redis) -> Any:
    client = _CountingRedis(connection_pool=redis_client.connection_pool)
    client.count()
    return client


async def test_concurrent_commands_share_one_pipeline_and_get_their_own_replies(
    counting: _CountingRedis, ns: str
) -> None:
    batch = Batcher(counting)
    keys = [f"{ns}:k{i}" for i in range(50)]
    await asyncio.gather(*(batch.execute("SET", k, f"v{i}") for i, k in enumerate(keys)))
    assert counting.pipelines == [50]
    assert counting.singles == 0

    got = await asyncio.gather(*(batch.execute("GET", k) for k in keys))
    assert got == [f"v{i}".encode() for i in range(50)]
    assert counting.pipelines == [50, 50]


async def test_a_command_alone_in_its_turn_is_sent_without_a_pipeline(
    counting: _CountingRedis, ns: str
) -> None:
    batch = Batcher(counting)
    for i in range(3):
        await batch.execute("SET", f"{ns}:alone", i)
    assert counting.pipelines == []
    assert counting.singles == 3
    assert await counting.get(f"{ns}:alone") == b"2"


async def test_commands_issued_while_a_pipeline_is_on_the_wire_go_out_together_after_it(
    counting: _CountingRedis, redis_client: Redis, ns: str
) -> None:
    batch = Batcher(counting)
    # BLPOP blocks until the push below: the first command stays in flight for as
    # long as the test needs, however slow the machine.
    first = asyncio.ensure_future(batch.execute("BLPOP", f"{ns}:empty", "30"))
    while counting.singles == 0:  # handed to the client, alone in its turn
        await asyncio.sleep(0)
    later = []
    for _ in range(3):
        later.append(asyncio.ensure_future(batch.execute("INCR", f"{ns}:n")))
        await asyncio.sleep(0)  # each in a turn of its own
    assert not first.done()
    await redis_client.rpush(f"{ns}:empty", "go")
    assert tuple(await first) == (f"{ns}:empty".encode(), b"go")
    assert sorted(await asyncio.gather(*later)) == [1, 2, 3]
    assert counting.singles == 1
    assert counting.pipelines == [3]


async def test_a_long_turn_is_split_into_pipelines_of_max_batch(
    counting: _CountingRedis, ns: str
) -> None:
    batch = Batcher(counting, max_batch=8)
    await asyncio.gather(*(batch.execute("INCR", f"{ns}:n") for _ in range(20)))
    assert counting.pipelines == [8, 8, 4]
    assert await counting.get(f"{ns}:n") == b"20"


async def test_a_command_error_goes_to_its_caller_only(redis_client: Redis, ns: str) -> None:
    batch = Batcher(redis_client)
    await redis_client.set(f"{ns}:text", "not a number")
    results = await asyncio.gather(
        batch.execute("INCR", f"{ns}:text"),
        batch.execute("INCR", f"{ns}:counter"),
        return_exceptions=True,
    )
    assert isinstance(results[0], ResponseError)
    assert results[1] == 1
    # Alone in its turn, the same error reaches the caller the same way.
    with pytest.raises(ResponseError):
        await batch.execute("INCR", f"{ns}:text")


async def test_scripts_are_loaded_again_after_a_script_flush(redis_client: Redis, ns: str) -> None:
    batch = Batcher(redis_client)
    script = LuaScript(redis_client, ECHO_KEY)
    await redis_client.script_flush()
    together = await asyncio.gather(*(batch.run(script, [f"{ns}:{i}"], [i]) for i in range(5)))
    assert together == [[f"{ns}:{i}".encode(), str(i).encode()] for i in range(5)]
    await redis_client.script_flush()
    assert await batch.run(script, [f"{ns}:x"], ["y"]) == [f"{ns}:x".encode(), b"y"]


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    redis_client: Redis, ns: str
) -> None:
    batch = Batcher(redis_client)
    doomed = asyncio.ensure_future(batch.execute("SET", f"{ns}:doomed", 1))
    others = [asyncio.ensure_future(batch.execute("INCR", f"{ns}:c")) for _ in range(3)]
    await asyncio.sleep(0)  # every caller has queued its command
    doomed.cancel()
    assert sorted(await asyncio.gather(*others)) == [1, 2, 3]
    assert doomed.cancelled()


async def test_a_lost_connection_fails_every_caller_of_the_batch() -> None:
    # Nothing listens on port 1; no retries, so the test does not wait out a backoff.
    client = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    batch = Batcher(client)
    results = await asyncio.gather(
        batch.execute("GET", "a"), batch.execute("GET", "b"), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    with pytest.raises(RedisConnectionError):
        await batch.execute("GET", "alone")
    await client.aclose()
