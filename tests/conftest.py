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


CHAOS = Path(__file__).parent / "chaos"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The chaos suite runs on its own (``make chaos``): collected only when named."""
    if collection_path != CHAOS:
        return None
    named = (Path(arg.split("::")[0]).resolve() for arg in config.args)
    return None if any(p == CHAOS or CHAOS in p.parents for p in named) else True
