"""Shared fixtures, and the one CI rule: under CI, a skip is a failure.

Integration tests skip on a laptop without RabbitMQ or Redis; in CI the
servers must be there, so any skip (a missing server, a missing program, a
test someone skipped by hand) fails the run instead of passing it quietly.
``CI`` counts when it is set to anything but empty, 0, false, no or off.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))

from servers import connect_redis, drop_namespace, in_ci, namespace


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, which must run every test: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    _fail_skip_in_ci(report)
    return report  # type: ignore[return-value]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report: pytest.CollectReport = yield
    _fail_skip_in_ci(report)
    return report  # type: ignore[return-value]


@pytest.fixture
async def redis_client(ns: str) -> AsyncIterator[Redis]:
    client = await connect_redis()
    yield client
    await drop_namespace(client, ns)
    await client.aclose()


@pytest.fixture
def ns() -> str:
    return namespace()
