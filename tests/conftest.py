"""Shared fixtures, and the one CI rule: under CI, a skip is a failure.

Integration tests skip on a laptop without RabbitMQ or Redis; in CI the
servers must be there, so any skip (a missing server, a missing program, a
test someone skipped by hand) fails the run instead of passing it quietly.
``CI`` counts when it is set to anything but empty, 0, false, no or off.

Under CI, Hypothesis would load its own ``ci`` profile, which derandomizes:
every run would replay the same examples. Ours draws a new seed per run
instead and prints it, so a failure found in CI can be replayed locally with
``pytest --hypothesis-seed=<seed>`` (``print_blob`` also prints the failing
example itself).
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))

from servers import connect_redis, drop_namespace, fail_skip_in_ci, in_ci, namespace


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not in_ci():
        return
    settings.register_profile("saga-ci", derandomize=False, database=None, print_blob=True)
    settings.load_profile("saga-ci")
    # Set before Hypothesis' own plugin reads the option (tryfirst), so it forces it.
    if config.getoption("hypothesis_seed") is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


def _seed_line(config: pytest.Config) -> str | None:
    seed = config.getoption("hypothesis_seed")
    if seed is None:
        return None
    return f"hypothesis seed {seed} (replay: pytest --hypothesis-seed={seed})"


def pytest_report_header(config: pytest.Config) -> str | None:
    return _seed_line(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = _seed_line(terminalreporter.config)
    if line:
        terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    fail_skip_in_ci(report)
    return report  # type: ignore[return-value]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report: pytest.CollectReport = yield
    fail_skip_in_ci(report)
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


# Suites with a target of their own, collected only when named: real processes
# (``make e2e``), the chaos suite (``make chaos``), the browser tests of the
# dashboard (``make browser``) and the built wheel in a fresh venv (``make
# package``). They keep ``make test`` under 15 minutes on two cores.
OWN_TARGET = {Path(__file__).parent / name for name in ("e2e", "chaos", "dashboard", "package")}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path not in OWN_TARGET:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return (
        None if any(p == collection_path or collection_path in p.parents for p in named) else True
    )
