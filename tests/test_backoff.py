"""The one outage backoff: its schedule, its patience on the injected clock, and
what it does not retry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from coordinator import backoff
from coordinator.backoff import retry_through_outage


class Outage(Exception):
    pass


class Slept:
    """A clock's ``sleep`` that takes no time and remembers what it was asked."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: timedelta) -> None:
        self.delays.append(delay.total_seconds())
        await asyncio.sleep(0)


def failing(
    times: int, error: Exception | None = None
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise error or Outage("down")
        return "done"

    return calls, call


def is_outage(exc: Exception) -> bool:
    return isinstance(exc, Outage)


async def test_a_call_that_succeeds_at_once_builds_no_retrying_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no(*args: object, **kwargs: object) -> None:
        raise AssertionError("built a retrying object for a call that succeeded")

    monkeypatch.setattr(backoff, "AsyncRetrying", no)
    calls, call = failing(0)
    slept = Slept()
    assert await retry_through_outage(call, is_outage=is_outage, sleep=slept) == "done"
    assert calls == [1]
    assert slept.delays == []


async def test_the_schedule_counts_from_the_first_failure() -> None:
    """50 ms doubling to 2 s, plus up to 50 ms of jitter; the first retry waits too."""
    calls, call = failing(8)
    slept = Slept()
    assert await retry_through_outage(call, is_outage=is_outage, sleep=slept) == "done"
    assert len(calls) == 9
    base = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert len(slept.delays) == len(base)
    for delay, expected in zip(slept.delays, base, strict=True):
        assert expected <= delay <= expected + 0.05


async def test_patience_is_the_time_slept_on_the_clock() -> None:
    calls, call = failing(100)
    slept = Slept()
    with pytest.raises(Outage):
        await retry_through_outage(
            call,
            is_outage=is_outage,
            sleep=slept,
            patience=timedelta(seconds=1),
        )
    # 0.05 + 0.1 + 0.2 + 0.4 (+ jitter) < 1 s; with 0.8 more it is spent.
    assert len(slept.delays) == 5
    assert sum(slept.delays[:-1]) < 1 <= sum(slept.delays)
    assert len(calls) == 6


async def test_a_failure_that_is_no_outage_is_raised_at_once() -> None:
    calls, call = failing(1, ValueError("wrong"))
    slept = Slept()
    with pytest.raises(ValueError, match="wrong"):
        await retry_through_outage(call, is_outage=is_outage, sleep=slept)
    assert calls == [1]
    assert slept.delays == []


async def test_stopping_gives_up_after_the_failure_at_hand() -> None:
    calls, call = failing(100)
    slept = Slept()
    with pytest.raises(Outage):
        await retry_through_outage(
            call,
            is_outage=is_outage,
            sleep=slept,
            stopping=lambda: len(calls) >= 3,
        )
    assert len(calls) == 3
    assert len(slept.delays) == 2


async def test_a_cancellation_is_not_retried() -> None:
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Outage("down")
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry_through_outage(call, is_outage=lambda _: True, sleep=Slept())
    assert len(calls) == 2
