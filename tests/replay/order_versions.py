"""Versions of the example's order saga, for replay: the same saga with its
charge step changed. ``saga replay --saga order_versions:ATTR`` loads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from msgspec.structs import replace

from coordinator import Retry, Saga, SagaDefinition
from coordinator.examples.orders import Order
from coordinator.examples.orders.messages import (
    Approval,
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
from coordinator.examples.orders.saga import APPROVAL_THRESHOLD_CENTS, STEP_TIMEOUT

CHARGE_RETRY = Retry(attempts=4, backoff=timedelta(seconds=2), give_up_on=("CardDeclined",))


def _charge(o: Order) -> Charge:
    return Charge(order_id=o.order_id, amount_cents=o.total_cents, card=o.card)


def _charged(o: Order, r: Charged) -> Order:
    return replace(o, charge_id=r.charge_id)


def order_saga(
    version: int = 1,
    *,
    charge_send: Callable[[Order], Charge] = _charge,
    charge_retry: Retry = CHARGE_RETRY,
    charge_merge: Callable[[Order, Charged], Order] = _charged,
) -> SagaDefinition[Order]:
    """The example's order saga (``coordinator.examples.orders.saga``), its charge
    step built from the arguments."""
    builder = Saga("order.place", data=Order, version=version, deadline=timedelta(days=2))
    return builder.define(
        builder.step(
            "reserve",
            service="inventory",
            send=lambda o: Reserve(order_id=o.order_id, lines=o.lines),
            undo=lambda o: Release(order_id=o.order_id),
            result=Reserved,
            merge=lambda o, r: replace(o, hold_id=r.hold_id),
            timeout=STEP_TIMEOUT,
            retry=Retry(attempts=3, backoff=timedelta(seconds=1), give_up_on=("OutOfStock",)),
        ),
        builder.parallel(
            "settle",
            builder.step(
                "charge",
                service="payments",
                send=charge_send,
                undo=lambda o: Refund(order_id=o.order_id),
                result=Charged,
                merge=charge_merge,
                timeout=STEP_TIMEOUT,
                retry=charge_retry,
            ),
            builder.step(
                "points",
                service="loyalty",
                send=lambda o: AwardPoints(
                    order_id=o.order_id, member_id=o.member_id or "", points=o.total_cents // 100
                ),
                undo=lambda o: RevokePoints(order_id=o.order_id, member_id=o.member_id or ""),
                when=lambda o: o.member_id is not None,
                timeout=STEP_TIMEOUT,
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
            timeout=STEP_TIMEOUT,
            retry=Retry(attempts=2, backoff=timedelta(seconds=1)),
        ),
    )


same = order_saga()
"""Version 1, as the example defines it."""

compatible_v2 = order_saga(2)
"""Version 2, deciding everything as version 1 does."""

no_charge_retry_v2 = order_saga(2, charge_retry=Retry(attempts=1))
"""Version 2 that gives up on the first failed charge: a flaky card compensates."""


def _double(o: Order) -> Charge:
    return Charge(order_id=o.order_id, amount_cents=2 * o.total_cents, card=o.card)


double_charge_v1 = order_saga(charge_send=_double)
"""Version 1 edited in place to charge twice the total: every charged saga diverges."""
