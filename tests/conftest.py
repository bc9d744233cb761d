"""Shared fixtures: a Redis client per test on its own namespace."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))

from servers import connect_redis, drop_namespace, namespace


@pytest.fixture
async def redis_client(ns: str) -> AsyncIterator[Redis]:
    client = await connect_redis()
    yield client
    await drop_namespace(client, ns)
    await client.aclose()


@pytest.fixture
def ns() -> str:
    return namespace()
