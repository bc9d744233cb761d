"""One classification of Redis outages, for the saga store and the reply store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinator import StoreUnavailableError
from coordinator.adapters.redis import RedisSagaStore
from coordinator.adapters.redis._transient import is_transient

sys.path.insert(0, str(Path(__file__).parent.parent / "participants"))
from flaky import FlakyRedis

OUTAGES = [
    BusyLoadingError("Redis is loading the dataset in memory"),
    RedisConnectionError("Connection refused"),
    RedisTimeoutError("Timeout reading from socket"),
    ReadOnlyError("You can't write against a read only replica."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    ClusterDownError("The cluster is down"),
    ClusterError("TTL exhausted."),
    MovedError("3999 127.0.0.1:7001"),
    ConnectionResetError(104, "Connection reset by peer"),
]
NOT_OUTAGES = [
    AuthenticationError("invalid username-password pair"),
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
def test_outages_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", NOT_OUTAGES, ids=lambda e: type(e).__name__)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not is_transient(error)


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_the_saga_store_reports_an_outage_as_unavailable(
    redis_client: Redis, ns: str, error: BaseException
) -> None:
    store = RedisSagaStore(FlakyRedis(redis_client, lambda _: error), namespace=ns)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError):
        await store.load("o-1")


@pytest.mark.parametrize("error", NOT_OUTAGES[:2], ids=lambda e: type(e).__name__)
async def test_the_saga_store_raises_other_errors_as_they_are(
    redis_client: Redis, ns: str, error: BaseException
) -> None:
    store = RedisSagaStore(FlakyRedis(redis_client, lambda _: error), namespace=ns)  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        await store.load("o-1")
