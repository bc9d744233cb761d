"""Real servers for the tests: connect, or fail in CI, or skip on a laptop without them."""

from __future__ import annotations

import os
import uuid

import pytest
from redis.asyncio import Redis

from coordinator.adapters.redis import connect_redis as connect_product_redis

AMQP_URL = os.environ.get("SAGA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("SAGA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, error: BaseException) -> None:
    """A server is missing: a failure in CI, where it must be there; a skip elsewhere."""
    message = f"{what} is not reachable ({error!r})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must provide it", pytrace=False)
    pytest.skip(message)


def namespace() -> str:
    """A namespace of its own for one test, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


async def connect_redis() -> Redis:
    """A client of the test Redis, made as the product makes its clients; fails in
    CI and skips elsewhere when it is down."""
    client = connect_product_redis(REDIS_URL)
    assert isinstance(client, Redis)
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
