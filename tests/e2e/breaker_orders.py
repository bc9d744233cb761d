"""A short order saga for the circuit-breaker scenarios: reserve stock, then charge.

``saga run --saga breaker_orders:saga`` (with tests/e2e on PYTHONPATH), on the
example participants. The environment sets what each scenario tests:

- ``BREAKER_ON_UNAVAILABLE``: the charge step's policy while the payments
  breaker is open, ``wait`` (the default) or ``compensate``;
- ``BREAKER_STEP_TIMEOUT``: the charge step's timeout in seconds (10 by
  default; a silent service's scenario makes it short, so that its timeouts
  open the breaker quickly).

The charge step retries many times on a short backoff: a saga must outlast the
outage on its retries, so that only the breaker decides when it waits, is
resumed, or compensates. ``GatewayTimeout`` (the ``flaky`` card's first answer,
a retryable failure) is in its ``give_up_on``: a business answer for this saga,
which must not count against the service. Another name than the example's
saga, so a stray message of one never reaches the other.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Literal, cast

from msgspec.structs import replace

from coordinator import Retry, Saga
from coordinator.examples.orders.messages import Charge, Charged, Refund, Release, Reserve, Reserved
from coordinator.examples.orders.saga import Order

NAME = "breaker.order"
CHARGE_ATTEMPTS = 30
RETRY_BACKOFF = timedelta(milliseconds=200)

ON_UNAVAILABLE = cast(
    Literal["wait", "compensate"], os.environ.get("BREAKER_ON_UNAVAILABLE", "wait")
)
CHARGE_TIMEOUT = timedelta(seconds=float(os.environ.get("BREAKER_STEP_TIMEOUT", "10")))

_builder = Saga(NAME, data=Order, version=1, deadline=timedelta(hours=1))
saga = _builder.define(
    _builder.step(
        "reserve",
        service="inventory",
        send=lambda o: Reserve(order_id=o.order_id, lines=o.lines),
        undo=lambda o: Release(order_id=o.order_id),
        result=Reserved,
        merge=lambda o, r: replace(o, hold_id=r.hold_id),
        timeout=timedelta(seconds=10),
        retry=Retry(attempts=3, backoff=RETRY_BACKOFF, give_up_on=("OutOfStock",)),
    ),
    _builder.step(
        "charge",
        service="payments",
        send=lambda o: Charge(order_id=o.order_id, amount_cents=o.total_cents, card=o.card),
        undo=lambda o: Refund(order_id=o.order_id),
        result=Charged,
        merge=lambda o, r: replace(o, charge_id=r.charge_id),
        timeout=CHARGE_TIMEOUT,
        retry=Retry(
            attempts=CHARGE_ATTEMPTS,
            backoff=RETRY_BACKOFF,
            multiplier=1.0,
            give_up_on=("GatewayTimeout",),
        ),
        on_unavailable=ON_UNAVAILABLE,
    ),
)
