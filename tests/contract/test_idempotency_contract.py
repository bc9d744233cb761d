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


async def test_a_recorded_reply_is_returned(store: Any) -> None:
    assert await store.get("s:step:action") is None
    await store.put("s:step:action", b'{"type":"TaskCompleted"}')
    assert await store.get("s:step:action") == b'{"type":"TaskCompleted"}'
    assert await store.get("s:step:compensation") is None


async def test_one_holder_at_a_time(store: Any) -> None:
    assert await store.claim("k", "w1", MINUTE)
    assert not await store.claim("k", "w2", MINUTE)
    assert await store.claim("k", "w1", MINUTE), "the holder may renew its own claim"
    await store.release("k", "w2")  # not the holder: nothing happens
    assert not await store.claim("k", "w2", MINUTE)
    await store.release("k", "w1")
    assert await store.claim("k", "w2", MINUTE)


async def test_a_claim_expires(store: Any) -> None:
    assert await store.claim("k", "dead-worker", timedelta(milliseconds=100))
    await asyncio.sleep(0.25)
    assert await store.claim("k", "w2", MINUTE)


async def test_redis_replies_expire_after_the_ttl(ns: str) -> None:
    client = await connect_redis()
    try:
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        await store.put("k", b"reply")
        assert 0 < await client.ttl(f"{ns}:reply:k") <= 90
    finally:
        await drop_namespace(client, ns)
        await client.aclose()
