"""The participants' reply store, against memory and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from servers import connect_redis, drop_namespace

from coordinator.adapters.memory import MemoryIdempotencyStore
from coordinator.adapters.redis import RedisIdempotencyStore

MINUTE = timedelta(minutes=1)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    client = await connect_redis()
    yield RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(hours=1))
    await drop_namespace(client, ns)
    await client.aclose()


async def test_the_first_worker_holds_the_key_and_its_reply_is_returned(store: Any) -> None:
    assert await store.begin("s:step:action", "w1", MINUTE) is True
    assert await store.begin("s:step:action", "w2", MINUTE) is False
    await store.finish("s:step:action", "w1", b'{"type":"TaskCompleted"}')
    assert await store.begin("s:step:action", "w2", MINUTE) == b'{"type":"TaskCompleted"}'
    assert await store.begin("s:step:compensation", "w2", MINUTE) is True


async def test_finishing_without_a_reply_lets_the_next_worker_run_it(store: Any) -> None:
    """A retryable failure is not recorded: the retry must really run."""
    assert await store.begin("k", "w1", MINUTE) is True
    await store.finish("k", "w1", None)
    assert await store.begin("k", "w2", MINUTE) is True


async def test_only_the_holder_releases_and_may_renew(store: Any) -> None:
    assert await store.begin("k", "w1", MINUTE) is True
    assert await store.begin("k", "w1", MINUTE) is True, "the holder may renew its hold"
    await store.finish("k", "w2", None)  # not the holder: the key stays held
    assert await store.begin("k", "w2", MINUTE) is False
    await store.finish("k", "w1", None)
    assert await store.begin("k", "w2", MINUTE) is True


async def test_a_hold_expires(store: Any) -> None:
    assert await store.begin("k", "dead-worker", timedelta(milliseconds=100)) is True
    await asyncio.sleep(0.25)
    assert await store.begin("k", "w2", MINUTE) is True


async def test_redis_replies_expire_after_the_ttl(ns: str) -> None:
    client = await connect_redis()
    try:
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        assert await store.begin("k", "w", MINUTE) is True
        await store.finish("k", "w", b"reply")
        keys = [key async for key in client.scan_iter(match=f"{ns}:reply:*")]
        assert len(keys) == 1
        assert 0 < await client.ttl(keys[0]) <= 90
        assert [key async for key in client.scan_iter(match=f"{ns}:claim:*")] == []
    finally:
        await drop_namespace(client, ns)
        await client.aclose()
