"""The commands and replies of the four order participants.

Each participant owns its messages; the saga only builds and reads them.
"""

from __future__ import annotations

import msgspec


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


# inventory
class Reserve(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    lines: list[Line]


class Release(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class Reserved(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str


# payments
class Charge(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    amount_cents: int
    card: str


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class Charged(msgspec.Struct, frozen=True, kw_only=True):
    charge_id: str


# loyalty
class AwardPoints(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    member_id: str
    points: int


class RevokePoints(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    member_id: str


# shipping
class BookShipment(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    address: str
    shipper: str


class CancelShipment(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class Booked(msgspec.Struct, frozen=True, kw_only=True):
    tracking_number: str


# the manager's decision, sent as a signal
class Approval(msgspec.Struct, frozen=True, kw_only=True):
    approved: bool
    by: str
