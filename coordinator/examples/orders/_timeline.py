"""The demo's timeline view: one row per history entry of a saga, and, for the
outage scenario, the breaker's transitions merged in where they happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coordinator.ports import BreakerEvent, HistoryEntry

__all__ = ["print_timeline"]

# The input kinds that answer a command to a service (a reply, or its timeout):
# the ones that can open or close that service's breaker.
_REPLIES = ("StepCompleted", "StepFailed")


def _describe_input(inp: Mapping[str, Any], breaker: str) -> str:
    kind = inp.get("type", "?")
    if kind in _REPLIES:
        what = "compensation " if inp["kind"] == "compensation" else ""
        verdict = "completed" if kind == "StepCompleted" else f"failed: {inp['error_type']}"
        return f"{what}{inp['step']} #{inp['attempt']} {verdict}"
    if kind == "TimerFired":
        return f"timer {inp['timer']}"
    if kind == "SignalReceived":
        return f"signal {inp['name']} {json.dumps(inp.get('data', {}))}"
    if kind == "ServiceRecovered":
        # The input does not say why the board resumed the saga; the breaker's
        # state at that moment does: half-open lets a probe out, closed lets all.
        why = "probe" if breaker == "half-open" else "resume"
        return f"{inp['service']} {breaker}: {why}"
    return {"Start": "start", "CancelRequested": "cancel"}.get(kind, str(kind))


def _service_of(inp: Mapping[str, Any], services: Mapping[str, str]) -> str | None:
    """The service whose breaker this input can move: a reply or a step timeout."""
    step: str | None = None
    if inp.get("type") in _REPLIES:
        step = inp["step"]
    elif inp.get("type") == "TimerFired" and str(inp["timer"]).startswith("timeout:"):
        step = str(inp["timer"]).split(":")[1]
    return services.get(step) if step is not None else None


def _slot(
    event: BreakerEvent,
    entries: Sequence[HistoryEntry],
    inputs: Sequence[Mapping[str, Any]],
    services: Mapping[str, str],
) -> int:
    """Where ``event`` goes among ``entries``: the index of the entry it precedes.

    The virtual clock gives an event and the entries around it the same time,
    so time alone cannot order them: an opening or a closing comes right after
    the first reply of that service at its time (the one that moved it, when
    this saga's), and a half-opening comes before the resume it lets out.
    """
    same = [i for i, entry in enumerate(entries) if entry.at == event.at]
    if not same:
        return next((i for i, entry in enumerate(entries) if entry.at > event.at), len(entries))
    if event.new != "half-open":
        for i in same:
            if _service_of(inputs[i], services) == event.service:
                return i + 1
    return same[0]


def print_timeline(
    entries: Sequence[HistoryEntry],
    console: Console,
    *,
    events: Sequence[BreakerEvent] = (),
    services: Mapping[str, str] | None = None,
) -> None:
    """Print a saga's history as a table of time, input and what was decided.

    ``events`` (oldest first) are breaker transitions to show among the entries;
    ``services`` names each step's service, to place them.
    """
    inputs: list[dict[str, Any]] = [msgspec.json.decode(e.input) for e in entries]
    slots = [_slot(event, entries, inputs, services or {}) for event in events]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("time", justify="right", style="dim")
    table.add_column("input")
    table.add_column("decided")
    start = entries[0].at
    breakers: dict[str, str] = {}
    for i in range(len(entries) + 1):
        for event, slot in zip(events, slots, strict=True):
            if slot == i:
                breakers[event.service] = event.new
                offset = (event.at - start).total_seconds()
                table.add_row(
                    f"{offset:+,.1f}s",
                    Text(f"breaker {event.service}", style="cyan"),
                    Text(f"{event.old} -> {event.new}: {event.reason}", style="cyan"),
                )
        if i == len(entries):
            break
        entry, inp = entries[i], inputs[i]
        offset = (entry.at - start).total_seconds()
        note = Text(entry.note, style="" if entry.changed else "dim")
        breaker = breakers.get(str(inp.get("service")), "closed")
        table.add_row(f"{offset:+,.1f}s", Text(_describe_input(inp, breaker)), note)
    console.print(table)
