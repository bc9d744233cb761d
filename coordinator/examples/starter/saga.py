"""The saga: hold a seat, then charge the card.

Run a coordinator with ``saga run --saga starter.saga:saga``; draw it with
``saga graph starter.saga:saga``.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
from msgspec.structs import replace

from coordinator import Retry, Saga

from .messages import Charge, Charged, HoldSeat, Refund, ReleaseSeat, SeatHeld


class Booking(msgspec.Struct, frozen=True, kw_only=True):
    """The saga's data: the booking as asked for, and what the steps learned."""

    booking_id: str
    seat: str
    amount_cents: int
    card: str = "visa"
    hold_id: str | None = None
    charge_id: str | None = None


builder = Saga("starter", data=Booking, deadline=timedelta(hours=1))

saga = builder.define(
    builder.step(
        "hold",
        service="seats",
        send=lambda b: HoldSeat(booking_id=b.booking_id, seat=b.seat),
        undo=lambda b: ReleaseSeat(booking_id=b.booking_id),
        result=SeatHeld,
        merge=lambda b, r: replace(b, hold_id=r.hold_id),
        timeout=timedelta(seconds=10),
    ),
    builder.step(
        "charge",
        service="payments",
        send=lambda b: Charge(booking_id=b.booking_id, amount_cents=b.amount_cents, card=b.card),
        undo=lambda b: Refund(booking_id=b.booking_id),
        result=Charged,
        merge=lambda b, r: replace(b, charge_id=r.charge_id),
        timeout=timedelta(seconds=10),
        retry=Retry(attempts=3, backoff=timedelta(seconds=1), give_up_on=("CardDeclined",)),
    ),
)
