"""The four order participants, written with the participants SDK.

Their behaviour follows the order, so every path of the saga can be shown:
an ``out-of-stock`` sku, a ``declined`` card, a ``flaky`` card (one transient
failure, then success), a ``slow`` shipper (answers after the saga stopped
waiting). Effects go to a :class:`Ledger`, the services' own store, which the
tests and the demo read to check that each effect happened exactly once.
"""

from __future__ import annotations

from collections import Counter

from coordinator._ports import Clock
from examples.orders.messages import (
    AwardPoints,
    Booked,
    BookShipment,
    CancelShipment,
    Charge,
    Charged,
    Refund,
    Release,
    Reserve,
    Reserved,
    RevokePoints,
)
from participants import Context, Failure, Service

SLOW_SHIPPER_SECONDS = 60.0


class OutOfStock(Failure):
    retryable = False


class CardDeclined(Failure):
    retryable = False


class GatewayTimeout(Failure):
    retryable = True


class Ledger:
    """Effects applied by the participants, as ``(service, effect, order_id)`` counts.

    A cancelled shipment leaves a tombstone, so a booking that arrives after its
    cancellation (a slow first attempt) is refused instead of applied.
    """

    def __init__(self) -> None:
        self.effects: Counter[tuple[str, str, str]] = Counter()
        self.cancelled_shipments: set[str] = set()
        self.flaky_seen: set[str] = set()

    def apply(self, service: str, effect: str, order_id: str) -> None:
        self.effects[(service, effect, order_id)] += 1

    def of(self, order_id: str) -> list[str]:
        return sorted(
            f"{s}.{e}" for (s, e, o), n in self.effects.items() for _ in range(n) if o == order_id
        )


def build_services(ledger: Ledger, clock: Clock) -> list[Service]:
    """The inventory, payments, loyalty and shipping services over one ledger."""
    return [_inventory(ledger), _payments(ledger), _loyalty(ledger), _shipping(ledger, clock)]


def _inventory(ledger: Ledger) -> Service:
    inventory = Service("inventory")

    @inventory.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
        for line in cmd.lines:
            if line.sku == "out-of-stock":
                raise OutOfStock(f"sku {line.sku!r} is out of stock")
        ledger.apply("inventory", "reserve", cmd.order_id)
        return Reserved(hold_id=f"hold-{cmd.order_id}")

    @inventory.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        ledger.apply("inventory", "release", cmd.order_id)

    return inventory


def _payments(ledger: Ledger) -> Service:
    payments = Service("payments")

    @payments.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> Charged:
        if cmd.card == "declined":
            raise CardDeclined("the card was declined")
        if cmd.card == "flaky" and cmd.order_id not in ledger.flaky_seen:
            ledger.flaky_seen.add(cmd.order_id)
            raise GatewayTimeout("the card network did not answer")
        ledger.apply("payments", "charge", cmd.order_id)
        return Charged(charge_id=f"ch-{cmd.order_id}")

    @payments.handles(Refund)
    async def refund(cmd: Refund, ctx: Context) -> None:
        ledger.apply("payments", "refund", cmd.order_id)

    return payments


def _loyalty(ledger: Ledger) -> Service:
    loyalty = Service("loyalty")

    @loyalty.handles(AwardPoints)
    async def award(cmd: AwardPoints, ctx: Context) -> None:
        ledger.apply("loyalty", "award", cmd.order_id)

    @loyalty.handles(RevokePoints)
    async def revoke(cmd: RevokePoints, ctx: Context) -> None:
        ledger.apply("loyalty", "revoke", cmd.order_id)

    return loyalty


def _shipping(ledger: Ledger, clock: Clock) -> Service:
    shipping = Service("shipping")

    @shipping.handles(BookShipment)
    async def book(cmd: BookShipment, ctx: Context) -> Booked:
        if cmd.shipper == "slow":
            await clock.sleep(SLOW_SHIPPER_SECONDS)
        # A cancellation that overtook this booking left a tombstone: do not apply.
        if cmd.order_id in ledger.cancelled_shipments:
            raise Failure(
                "ShipmentCancelled", "the shipment was cancelled meanwhile", retryable=False
            )
        ledger.apply("shipping", "book", cmd.order_id)
        return Booked(tracking_number=f"trk-{cmd.order_id}")

    @shipping.handles(CancelShipment)
    async def cancel(cmd: CancelShipment, ctx: Context) -> None:
        ledger.cancelled_shipments.add(cmd.order_id)
        ledger.apply("shipping", "cancel", cmd.order_id)

    return shipping
