"""``saga breakers`` and ``saga breaker open|close|reset``, as real processes on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from servers import AMQP_URL, REDIS_URL, connect_redis, drop_namespace, namespace

from coordinator.adapters.redis import RedisBreakerStore
from coordinator.ports import BreakerPolicy

BIN = Path(sys.executable).parent


def saga(ns: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "SAGA_NAMESPACE": ns,
        "SAGA_AMQP_URL": AMQP_URL,
        "SAGA_REDIS_URL": REDIS_URL,
        **env,
    }
    return subprocess.run(
        [str(BIN / "saga"), *args], env=environ, capture_output=True, text=True, timeout=60
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line, line


@pytest.fixture
async def ns() -> AsyncIterator[str]:
    name = namespace()
    redis = await connect_redis()
    # What a coordinator does at start: every service it watches joins the list.
    store = RedisBreakerStore(redis, namespace=name)
    policy = BreakerPolicy(fail_max=2, reset_timeout=timedelta(seconds=30))
    await store.apply("pay", "refresh", policy)
    await store.apply("stock", "refresh", policy)
    await store.apply("pay", "failure", policy)
    await store.apply("pay", "failure", policy)
    try:
        yield name
    finally:
        await drop_namespace(redis, name)
        await redis.aclose()


async def test_saga_breakers_lists_each_service(ns: str) -> None:
    done = saga(ns, "breakers", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["service"]: r for r in json.loads(done.stdout)}
    assert rows["pay"]["state"] == "open"
    assert rows["pay"]["failures"] == 2
    assert rows["pay"]["half_open_at"] is not None
    assert rows["pay"]["parked"] == 0
    assert rows["stock"]["state"] == "closed"
    table = saga(ns, "breakers").stdout
    assert "HALF-OPENS AT" in table and "pay" in table


async def test_an_override_is_recorded_with_who_and_why(ns: str) -> None:
    done = saga(ns, "breaker", "close", "pay", "--reason", "fixed the gateway", "--by", "ana")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pay: closed; 0 saga(s) parked"
    done = saga(ns, "breaker", "open", "stock", "--reason", "maintenance", USER="bo")
    assert done.returncode == 0, done.stderr
    redis = await connect_redis()
    try:
        store = RedisBreakerStore(redis, namespace=ns)
        [closed, *_] = await store.events("pay")
        assert (closed.new, closed.reason, closed.by) == ("closed", "fixed the gateway", "ana")
        [opened] = await store.events("stock")
        assert (opened.new, opened.reason, opened.by) == ("open", "maintenance", "bo")
    finally:
        await redis.aclose()
    rows = {r["service"]: r for r in json.loads(saga(ns, "breakers", "--json").stdout)}
    assert (rows["stock"]["state"], rows["stock"]["held"]) == ("open", True)


async def test_each_mistake_is_one_line(ns: str) -> None:
    one_line_error(saga(ns, "breaker", "open", "nope", "--reason", "x"), 1, "unknown service")
    one_line_error(saga(ns, "breaker", "open", "pay"), 2, "--reason")
    one_line_error(saga(ns, "breaker", "reset", "pay", "--reason", " "), 1, "reason")
    one_line_error(saga(ns, "breaker", "shut", "pay", "--reason", "x"), 2, "shut")
    one_line_error(saga(ns, "breakers", SAGA_REDIS_URL="redis://127.0.0.1:1"), 3, "Redis")
