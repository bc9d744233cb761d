"""Waiting for a server at start-up: capped backoff on an injected sleep, one
line per wait naming the server and its URL without the password, and a clear
error when the patience runs out."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiormq
import pytest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from coordinator import SagaError, ServerUnreachableError
from coordinator.service._startup import BACKOFF_MAX, mask_url, wait_for_server

URL = "amqp://guest:secret@rabbit:5672/"


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url(URL) == "amqp://guest:***@rabbit:5672/"
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


async def test_retries_with_capped_backoff_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pauses: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 12:
            raise ConnectionRefusedError(111, "Connection refused")
        return "up"

    with caplog.at_level(logging.WARNING, logger="coordinator"):
        got = await wait_for_server(
            "RabbitMQ", URL, "SAGA_AMQP_URL", attempt, patience=None, sleep=sleep
        )
    assert got == "up"
    assert len(pauses) == 11
    assert pauses == sorted(pauses) and max(pauses) == BACKOFF_MAX
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 11
    assert lines[0].startswith(
        "waiting for RabbitMQ at amqp://guest:***@rabbit:5672/ (connection refused)"
    )
    assert all("secret" not in line for line in lines)
    # Each line counts: the progress of the wait.
    assert [int(line.split("; attempt ")[1].split(",")[0]) for line in lines] == list(range(1, 12))


async def test_patience_zero_fails_at_once_with_one_clear_message() -> None:
    async def attempt() -> None:
        raise aiormq.exceptions.AMQPConnectionError(111, "Connect call failed")

    with pytest.raises(ServerUnreachableError) as caught:
        await wait_for_server("RabbitMQ", URL, "SAGA_AMQP_URL", attempt, patience=timedelta(0))
    assert str(caught.value) == (
        "cannot reach RabbitMQ at amqp://guest:***@rabbit:5672/ (connection refused); "
        "start it or set SAGA_AMQP_URL"
    )


async def test_a_lost_reply_is_an_attempt_that_timed_out_and_is_retried() -> None:
    """The first ``TIME`` of ``saga run`` whose reply never comes (a proxy dropped
    it) must not hang start-up, nor end it: the attempt is abandoned and retried."""
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # the reply never comes
        if calls == 2:
            raise RedisConnectionError("Connection reset by peer")
        return "synced"

    async def sleep(_: float) -> None:
        pass

    got = await wait_for_server(
        "Redis",
        "redis://r:6379/0",
        "SAGA_REDIS_URL",
        attempt,
        patience=None,
        sleep=sleep,
        attempt_timeout=timedelta(seconds=0.05),
    )
    assert (got, calls) == ("synced", 3)


@pytest.mark.parametrize(
    "refusal",
    [
        aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"),
        AuthenticationError("invalid username-password pair"),
    ],
)
async def test_a_server_that_refuses_us_is_not_waited_for(refusal: Exception) -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise refusal

    with pytest.raises(SagaError, match=r"refused the connection.*check the credentials in SAGA_X"):
        await wait_for_server("It", "x://h/", "SAGA_X", attempt, patience=None)
    assert calls == 1
