"""The saga end to end, in memory: the coordinator and both services in one
process, on a virtual clock. Run with ``pytest``."""

from __future__ import annotations

import asyncio

from coordinator.testing import Harness, VirtualClock

from .saga import Booking, saga
from .services import build_services


async def book(booking: Booking, held: dict[str, str]) -> str:
    clock = VirtualClock()
    async with Harness([saga], build_services(held), clock=clock) as h:
        await h.start("starter", booking, saga_id=booking.booking_id)
        return (await h.run_until_done(booking.booking_id)).status


def test_a_booking_completes_and_keeps_its_seat() -> None:
    held: dict[str, str] = {}
    status = asyncio.run(book(Booking(booking_id="b-1", seat="12A", amount_cents=4_500), held))
    assert status == "completed"
    assert held == {"b-1": "12A"}


def test_a_declined_card_releases_the_seat() -> None:
    held: dict[str, str] = {}
    declined = Booking(booking_id="b-2", seat="12B", amount_cents=4_500, card="declined")
    assert asyncio.run(book(declined, held)) == "compensated"
    assert held == {}
