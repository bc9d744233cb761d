"""The example services' switch that takes a service down (for the breaker demo and tests)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.adapters.memory import VirtualClock
from coordinator.examples.orders import Outages
from coordinator.examples.orders.services import ServiceDown


def test_the_switch_text_names_services_and_how_they_are_down() -> None:
    assert Outages.parse("payments, shipping:silent,,") == {
        "payments": "failing",
        "shipping": "silent",
    }
    assert Outages.parse("") == {}


async def test_a_failing_service_fails_retryably_and_the_others_answer() -> None:
    outages, clock = Outages({"payments": "failing"}), VirtualClock()
    with pytest.raises(ServiceDown) as caught:
        await outages.check("payments", clock)
    assert caught.value.retryable
    await outages.check("inventory", clock)  # up: returns
    outages.down.clear()
    await outages.check("payments", clock)


async def test_a_silent_service_hangs_until_it_is_back() -> None:
    outages, clock = Outages({"shipping": "silent"}), VirtualClock()
    waiting = asyncio.ensure_future(outages.check("shipping", clock))
    for _ in range(3):  # seconds pass; it stays silent
        while not clock.sleepers:
            await asyncio.sleep(0)
        clock.advance(timedelta(seconds=1))
    assert not waiting.done()
    outages.down.clear()
    clock.advance(timedelta(seconds=1))
    await asyncio.wait_for(waiting, 1)


async def test_a_switch_file_is_read_on_every_command(tmp_path: Path) -> None:
    switch = tmp_path / "down"
    outages, clock = Outages(file=str(switch)), VirtualClock()
    await outages.check("payments", clock)  # no file: everything is up
    switch.write_text("payments")
    with pytest.raises(ServiceDown):
        await outages.check("payments", clock)
    switch.write_text("")
    await outages.check("payments", clock)
