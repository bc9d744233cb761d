"""The order saga: reserve stock, charge and award points in parallel, ask a
manager to approve large orders, then book shipping.

Run it with ``saga run --saga coordinator.examples.orders:saga``; draw it with
``saga graph coordinator.examples.orders:saga``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import msgspec
from msgspec.structs import replace

from coordinator import Breaker, Retry, Saga, SagaDefinition
from coordinator.examples.orders.messages import (
    Approval,
    AwardPoints,
    Booked,
    BookShipment,
    CancelShipment,
    Charge,
    Charged,
    Line,
    Refund,
    Release,
    Reserve,
    Reserved,
    RevokePoints,
)

APPROVAL_THRESHOLD_CENTS = 100_000


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """The saga's data: the order as placed, and what the steps learned."""

    order_id: str
    lines: list[Line]
    total_cents: int
    card: str = "visa"
    member_id: str | None = None
    address: str = "1 Main St"
    shipper: str = "fast"
    hold_id: str | None = None
    charge_id: str | None = None
    approved_by: str | None = None
    tracking_number: str | None = None


STEP_TIMEOUT = timedelta(seconds=10)


def build(
    *,
    step_timeout: timedelta = STEP_TIMEOUT,
    breakers: Mapping[str, Breaker] | None = None,
) -> SagaDefinition[Order]:
    """The order saga. ``step_timeout`` is how long each step waits for a reply
    before it counts as unknown; ``saga`` below uses the default. A deployment
    whose outages can outlast it (the end-to-end tests kill the broker) builds
    one with a longer wait. ``breakers`` sets the circuit breaker of some of its
    services (the others keep the defaults, ``Breaker()``); the demo's outage
    uses a short one."""
    builder = Saga(
        "order.place", data=Order, version=1, deadline=timedelta(days=2), breakers=breakers
    )
    return builder.define(
        builder.step(
            "reserve",
            service="inventory",
            send=lambda o: Reserve(order_id=o.order_id, lines=o.lines),
            undo=lambda o: Release(order_id=o.order_id),
            result=Reserved,
            merge=lambda o, r: replace(o, hold_id=r.hold_id),
            timeout=step_timeout,
            retry=Retry(attempts=3, backoff=timedelta(seconds=1), give_up_on=("OutOfStock",)),
        ),
        builder.parallel(
            "settle",
            builder.step(
                "charge",
                service="payments",
                send=lambda o: Charge(order_id=o.order_id, amount_cents=o.total_cents, card=o.card),
                undo=lambda o: Refund(order_id=o.order_id),
                result=Charged,
                merge=lambda o, r: replace(o, charge_id=r.charge_id),
                timeout=step_timeout,
                retry=Retry(attempts=4, backoff=timedelta(seconds=2), give_up_on=("CardDeclined",)),
            ),
            builder.step(
                "points",
                service="loyalty",
                send=lambda o: AwardPoints(
                    order_id=o.order_id, member_id=o.member_id or "", points=o.total_cents // 100
                ),
                undo=lambda o: RevokePoints(order_id=o.order_id, member_id=o.member_id or ""),
                when=lambda o: o.member_id is not None,
                timeout=step_timeout,
            ),
        ),
        builder.wait_for(
            "approval",
            when=lambda o: o.total_cents >= APPROVAL_THRESHOLD_CENTS,
            timeout=timedelta(hours=24),
            data=Approval,
            accept=lambda o, a: a.approved,
            merge=lambda o, a: replace(o, approved_by=a.by),
        ),
        builder.step(
            "ship",
            service="shipping",
            send=lambda o: BookShipment(order_id=o.order_id, address=o.address, shipper=o.shipper),
            undo=lambda o: CancelShipment(order_id=o.order_id),
            result=Booked,
            merge=lambda o, r: replace(o, tracking_number=r.tracking_number),
            timeout=step_timeout,
            retry=Retry(attempts=2, backoff=timedelta(seconds=1)),
        ),
    )


saga = build()
