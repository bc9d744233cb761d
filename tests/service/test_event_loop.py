"""The processes' event loop: uvloop when installed, the standard one on request."""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

from coordinator import Settings
from coordinator.service import run_loop


@pytest.fixture(autouse=True)
def _no_saga_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests say which settings they set: none leaks in from the caller's shell."""
    for name in list(os.environ):
        if name.upper().startswith("SAGA_"):
            monkeypatch.delenv(name)


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize("kind", ["auto", "uvloop"])
def test_uvloop_runs_when_installed(kind: str) -> None:
    assert run_loop(_loop_type(), kind) is uvloop.Loop  # type: ignore[arg-type]


def test_the_standard_loop_on_request() -> None:
    assert not issubclass(run_loop(_loop_type(), "asyncio"), uvloop.Loop)


def test_the_setting_defaults_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_loop == "auto"
    monkeypatch.setenv("SAGA_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
