"""``saga demo``: the order example on the in-memory adapters, with timelines:
four orders down each path of the saga, then four through a payments outage.

The CLI finds `run_demo` by name; nothing in the library imports the examples.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coordinator.adapters.memory import VirtualClock
from coordinator.core import SagaState
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders._outage import (
    ORDER_EVERY,
    ORDERS,
    OUTAGE_BREAKERS,
    OutageRun,
    payments_outage,
)
from coordinator.examples.orders.messages import Approval, Line
from coordinator.examples.orders.saga import APPROVAL_THRESHOLD_CENTS
from coordinator.ports import HistoryEntry
from coordinator.replay import print_timeline
from coordinator.testing import Harness

__all__ = ["run_demo"]

_STYLE = {"completed": "green", "compensated": "yellow", "cancelled": "yellow", "failed": "red"}


def _orders() -> list[tuple[str, Order, str]]:
    book = [Line(sku="book", quantity=1)]
    return [
        (
            "an order that completes",
            Order(order_id="A-1001", lines=book, total_cents=4_500, member_id="m-7"),
            "completed",
        ),
        (
            "a declined card: compensated",
            Order(
                order_id="A-1002", lines=book, total_cents=7_900, card="declined", member_id="m-8"
            ),
            "compensated",
        ),
        (
            "a large order, approved by a manager",
            Order(order_id="A-1003", lines=book, total_cents=250_000, card="flaky"),
            "completed",
        ),
        (
            "a slow shipper: timed out, compensated",
            Order(order_id="A-1004", lines=book, total_cents=3_000, shipper="slow"),
            "compensated",
        ),
    ]


async def run_demo(console: Console | None = None) -> int:
    """Run four orders through the saga, then four more through a payments outage;
    0 when each ended as expected."""
    console = console or Console()
    clock = VirtualClock()
    ledger = Ledger()
    failures = 0
    async with Harness([saga], build_services(ledger, clock), clock=clock) as harness:
        for title, order, expected in _orders():
            await harness.start(saga.name, order, saga_id=order.order_id)
            if order.total_cents >= APPROVAL_THRESHOLD_CENTS:
                await harness.advance(timedelta(hours=2))  # the manager takes a while
                await harness.signal(order.order_id, "approval", Approval(approved=True, by="dana"))
            state = await harness.run_until_done(order.order_id)
            console.rule(f"[bold]{order.order_id}[/bold]: {title}")
            print_timeline(list(await harness.history(order.order_id)), console)
            failures += _verdict(state, ledger.of(order.order_id), expected, console)
    failures += _show_outage(await payments_outage(), console)
    console.rule()
    total = len(_orders()) + len(ORDERS)
    console.print(
        f"all {total} sagas ended as expected" if not failures else f"{failures} unexpected"
    )
    return 1 if failures else 0


def _verdict(state: SagaState[Any], effects: list[str], expected: str, console: Console) -> int:
    """Print what a saga applied and how it ended; 1 if not as ``expected``."""
    style = _STYLE.get(state.status, "white")
    console.print(Text(f"effects applied: {', '.join(effects) or 'none'}"))
    console.print(
        f"status: [{style}]{state.status}[/{style}]"
        + (f" ({state.reason})" if state.reason else "")
    )
    if state.status != expected:
        console.print(f"[red]expected {expected}[/red]")
        return 1
    return 0


# What the outage must show: the breaker opened, let one probe out, and closed.
_TRANSITIONS = [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def _show_outage(run: OutageRun, console: Console) -> int:
    """Print the outage: the first order's timeline in full (it helps trip the breaker
    and carries the probe), a line for each other order, the breaker's event log.

    Returns how many things did not go as expected.
    """
    first, *others = ORDERS
    breaker = OUTAGE_BREAKERS["payments"]
    console.rule(f"[bold]{first} to {others[-1]}[/bold]: payments go down, then recover")
    console.print(
        f"Payments fail every command from +0.0s to {_at(run, run.up_at)}, while an order"
        f" comes in every {ORDER_EVERY.total_seconds():.0f}s. The payments breaker"
        f" (Saga(breakers=...)) opens after {breaker.fail_max} failures and half-opens"
        f" {breaker.reset_timeout.total_seconds():.0f}s later."
    )
    print_timeline(run.histories[first], console, events=run.events, services=run.services)
    failures = _verdict(run.states[first], run.ledger.of(first), "completed", console)
    failures += _charged_once(run, first, console)
    console.print(
        Text(
            f"when payments came back ({_at(run, run.up_at)}), {run.parked_while_down} sagas"
            " were parked for them; the other orders:"
        )
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    for order_id in others:
        failures += _summary(run, order_id, table)
        failures += _charged_once(run, order_id, console)
    console.print(table)
    console.print(Text("the payments breaker's event log:"))
    log = Table(show_header=False, box=None, pad_edge=False)
    for event in run.events:
        log.add_row(_at(run, event.at), f"{event.old} -> {event.new}", event.reason)
    console.print(log)
    if [(e.old, e.new) for e in run.events] != _TRANSITIONS:
        path = " -> ".join(["closed", *(new for _, new in _TRANSITIONS)])
        console.print(f"[red]expected the breaker to go {path}[/red]")
        failures += 1
    return failures


def _summary(run: OutageRun, order_id: str, table: Table) -> int:
    """One row for an order of the outage; 1 if it did not complete."""
    state, entries = run.states[order_id], run.histories[order_id]
    parked = next((e.at for e in entries if "waits: payments" in e.note), None)
    resumed = next((e.at for e in entries if _kind(e) == "ServiceRecovered"), None)
    style = _STYLE.get(state.status, "white")
    table.add_row(
        order_id,
        Text(state.status, style=style),
        f"parked {_at(run, parked)}",
        f"resumed {_at(run, resumed)}",
        f"charge attempts: {state.steps['charge'].attempt}",
    )
    return 0 if state.status == "completed" else 1


def _charged_once(run: OutageRun, order_id: str, console: Console) -> int:
    charges = run.ledger.of(order_id).count("payments.charge")
    if charges == 1:
        return 0
    console.print(f"[red]{order_id}: expected one charge, found {charges}[/red]")
    return 1


def _kind(entry: HistoryEntry) -> object:
    return msgspec.json.decode(entry.input).get("type")


def _at(run: OutageRun, when: datetime | None) -> str:
    return "never" if when is None else f"+{(when - run.down_at).total_seconds():,.1f}s"
