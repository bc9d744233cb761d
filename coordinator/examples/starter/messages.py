"""The commands and replies of the two services: the wire between the saga and them."""

from __future__ import annotations

import msgspec


# seats
class HoldSeat(msgspec.Struct, frozen=True, kw_only=True):
    booking_id: str
    seat: str


class ReleaseSeat(msgspec.Struct, frozen=True, kw_only=True):
    booking_id: str


class SeatHeld(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str


# payments
class Charge(msgspec.Struct, frozen=True, kw_only=True):
    booking_id: str
    amount_cents: int
    card: str


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    booking_id: str


class Charged(msgspec.Struct, frozen=True, kw_only=True):
    charge_id: str
