"""``saga demo``: the order example on the in-memory adapters, with timelines.

The CLI finds `run_demo` by name; nothing in the library imports the examples.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coordinator.adapters.memory import VirtualClock
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Approval, Line
from coordinator.examples.orders.saga import APPROVAL_THRESHOLD_CENTS
from coordinator.ports import HistoryEntry
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


def _describe_input(raw: msgspec.Raw) -> str:
    inp: dict[str, Any] = msgspec.json.decode(raw)
    kind = inp.get("type", "?")
    if kind in ("StepCompleted", "StepFailed"):
        what = "compensation " if inp["kind"] == "compensation" else ""
        verdict = "completed" if kind == "StepCompleted" else f"failed: {inp['error_type']}"
        return f"{what}{inp['step']} #{inp['attempt']} {verdict}"
    if kind == "TimerFired":
        return f"timer {inp['timer']}"
    if kind == "SignalReceived":
        return f"signal {inp['name']} {json.dumps(inp.get('data', {}))}"
    return {"Start": "start", "CancelRequested": "cancel"}.get(kind, str(kind))


def _timeline(entries: list[HistoryEntry], console: Console) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("time", justify="right", style="dim")
    table.add_column("input")
    table.add_column("decided")
    start = entries[0].at
    for entry in entries:
        offset = (entry.at - start).total_seconds()
        note = Text(entry.note, style="" if entry.changed else "dim")
        table.add_row(f"+{offset:,.1f}s", Text(_describe_input(entry.input)), note)
    console.print(table)


async def run_demo(console: Console | None = None) -> int:
    """Run four orders through the saga; 0 when each ended as expected."""
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
            style = _STYLE.get(state.status, "white")
            console.rule(f"[bold]{order.order_id}[/bold]: {title}")
            _timeline(list(await harness.history(order.order_id)), console)
            console.print(
                Text(f"effects applied: {', '.join(ledger.of(order.order_id)) or 'none'}")
            )
            console.print(
                f"status: [{style}]{state.status}[/{style}]"
                + (f" ({state.reason})" if state.reason else "")
            )
            if state.status != expected:
                failures += 1
                console.print(f"[red]expected {expected}[/red]")
    console.rule()
    console.print("all four sagas ended as expected" if not failures else f"{failures} unexpected")
    return 1 if failures else 0
