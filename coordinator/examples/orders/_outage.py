"""The demo's outage: payments fail every command while orders come in. The
breaker opens after three failures and the sagas park instead of hammering it;
payments come back, the breaker half-opens and lets one probe out, the probe
succeeds, the breaker closes and every parked saga resumes and completes.

``payments_outage`` runs it on the in-memory harness and returns what happened;
``saga demo`` prints it and the example tests check it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from coordinator import Breaker, SagaDefinition, SagaState
from coordinator.adapters.memory import VirtualClock
from coordinator.client import breaker_events
from coordinator.examples.orders.messages import Line
from coordinator.examples.orders.saga import Order, build
from coordinator.examples.orders.services import Ledger, Outages, build_services
from coordinator.ports import BreakerEvent, HistoryEntry
from coordinator.testing import Harness

__all__ = [
    "ORDERS",
    "ORDER_EVERY",
    "OUTAGE_BREAKERS",
    "OutageRun",
    "payments_outage",
]

# Short, so the story fits a screen: the default (five failures) would take more
# orders to trip it, and the reset timeout is the default's, 30 s of virtual time.
OUTAGE_BREAKERS = {"payments": Breaker(fail_max=3, reset_timeout=timedelta(seconds=30))}

ORDERS = ("B-2001", "B-2002", "B-2003", "B-2004")
# An order every five seconds while payments are down; they come back before the
# breaker half-opens, so its first probe succeeds.
ORDER_EVERY = timedelta(seconds=5)
DOWN_FOR = timedelta(seconds=25)


@dataclass(frozen=True, kw_only=True)
class OutageRun:
    """What the outage left: each saga's end and history, and the breaker's log.

    Attributes:
        definition: The saga, built with ``OUTAGE_BREAKERS``.
        down_at: When payments went down (the first order came in then).
        up_at: When payments came back.
        parked_while_down: Sagas parked for payments just before they came back.
        states: Each order's saga as it ended.
        histories: Each order's saga history.
        events: The payments breaker's transitions, oldest first.
        ledger: The effects the services applied.
    """

    definition: SagaDefinition[Order]
    down_at: datetime
    up_at: datetime
    parked_while_down: int
    states: Mapping[str, SagaState[Any]]
    histories: Mapping[str, Sequence[HistoryEntry]]
    events: Sequence[BreakerEvent]
    ledger: Ledger

    @property
    def services(self) -> dict[str, str]:
        """Each step's service, to place the breaker's transitions in a timeline."""
        return {name: step.service for name, step in self.definition.steps.items()}


async def payments_outage() -> OutageRun:
    """Run the outage from a fresh harness, so the earlier scenarios' breakers
    (shipping's, opened by the slow shipper) play no part in it."""
    clock, ledger, outages = VirtualClock(), Ledger(), Outages()
    definition = build(breakers=OUTAGE_BREAKERS)
    book = [Line(sku="book", quantity=1)]
    async with Harness([definition], build_services(ledger, clock, outages), clock=clock) as h:
        outages.down["payments"] = "failing"
        down_at = clock.now()
        for order_id in ORDERS:
            order = Order(order_id=order_id, lines=book, total_cents=2_500)
            await h.start(definition.name, order, saga_id=order_id)
            await h.advance(ORDER_EVERY)
        await h.advance(down_at + DOWN_FOR - clock.now())
        parked = await h.store.parked_count("payments")
        del outages.down["payments"]
        up_at = clock.now()
        states = {order_id: await h.run_until_done(order_id) for order_id in ORDERS}
        return OutageRun(
            definition=definition,
            down_at=down_at,
            up_at=up_at,
            parked_while_down=parked,
            states=states,
            histories={order_id: list(await h.history(order_id)) for order_id in ORDERS},
            events=list(reversed(await breaker_events(h.breaker_store, "payments"))),
            ledger=ledger,
        )
