"""Real servers for the tests: connect, or skip on a laptop without them.

The CI rule lives in one place, tests/conftest.py: when ``CI`` is set, any
skip is turned into a failure. Helpers here only skip, with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import connect_redis as connect_product_redis

AMQP_URL = os.environ.get("SAGA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("SAGA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Only a failure to reach the server is "not there"; anything else (a bug in
# the product's client, say) must surface as the error it is.
UNREACHABLE = (ConnectionError, OSError, TimeoutError, RedisConnectionError, RedisTimeoutError)


def in_ci() -> bool:
    """``CI`` set to anything but empty, ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skipped report into a failure that keeps the reason."""
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, which must run every test: {reason}"


def unavailable(what: str, error: BaseException) -> None:
    """A server or tool is missing: skip (tests/conftest.py fails the skip under CI)."""
    pytest.skip(f"{what} is not reachable ({error!r})")


def require_program(name: str) -> str:
    """The path of ``name`` on PATH, or a skip saying it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def namespace() -> str:
    """A namespace of its own for one test, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"


async def connect_redis() -> Redis:
    """A client of the test Redis, made as the product makes its clients."""
    client = connect_product_redis(REDIS_URL)
    assert isinstance(client, Redis)
    try:
        await client.ping()
    except UNREACHABLE as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL} (set SAGA_TEST_REDIS_URL)", exc)
    return client


async def connect_rabbit(ns: str, **options: Any) -> RabbitTransport:
    """A RabbitTransport on the test broker and namespace ``ns``."""
    options.setdefault("connect_timeout", timedelta(seconds=3))
    try:
        return await RabbitTransport.connect(AMQP_URL, namespace=ns, **options)
    except UNREACHABLE as exc:
        unavailable(f"RabbitMQ at {AMQP_URL} (set SAGA_TEST_AMQP_URL)", exc)
        raise  # unreachable: skip raises


async def connect_amqp() -> aio_pika.abc.AbstractRobustConnection:
    """A plain aio-pika connection, to look at the broker from outside the transport."""
    try:
        return await aio_pika.connect_robust(AMQP_URL, timeout=3)
    except UNREACHABLE as exc:
        unavailable(f"RabbitMQ at {AMQP_URL} (set SAGA_TEST_AMQP_URL)", exc)
        raise


async def drop_namespace(client: Redis, ns: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{ns}:*", count=1000)]
    if keys:
        await client.delete(*keys)
