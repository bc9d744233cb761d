"""Shared fixtures: a Redis client per test on its own namespace."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))

from servers import REDIS_URL, namespace, unavailable


async def connect_redis() -> Redis:
    """A client of the test Redis; fails in CI and skips elsewhere when it is down."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable("Redis", exc)
    return client


async def drop_namespace(client: Redis, ns: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{ns}:*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_client(ns: str) -> AsyncIterator[Redis]:
    client = await connect_redis()
    yield client
    await drop_namespace(client, ns)
    await client.aclose()


@pytest.fixture
def ns() -> str:
    return namespace()
