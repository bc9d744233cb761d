"""A saga's history as a timeline: one row per entry, what came in and what was
decided. ``saga history`` prints it with each entry's time and definition
version; the demo prints the compact form, with the breaker's transitions of
its outage scenario merged in where they happened.
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

__all__ = ["describe_input", "entry_json", "print_timeline"]

# The input kinds that answer a command to a service (a reply, or its timeout):
# the ones that can open or close that service's breaker.
_REPLIES = ("StepCompleted", "StepFailed")

_OPERATOR = {
    "RetryRequested": "retry",
    "PauseRequested": "pause",
    "ResumeRequested": "resume",
}


def describe_input(inp: Mapping[str, Any], breaker: str = "closed") -> str:
    """A few words on a recorded input (the JSON of ``HistoryEntry.input``):
    ``charge #2 failed: CardDeclined``, ``timer timeout:ship:action:1``, ``start``.

    ``breaker`` is the state of the recovered service's breaker, for a
    ``ServiceRecovered``: it says whether the saga was let out as a probe.
    """
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
    if kind == "CancelRequested":
        return f"cancel: {inp.get('reason', 'cancelled by request')}"
    if kind in _OPERATOR:
        by = inp.get("by")
        return _OPERATOR[kind] + (f" by {by}" if by else "")
    if kind == "Start":
        by = inp.get("by")
        return "start" + (f" by {by}" if by else "")
    return str(kind)


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    """An entry as JSON values with every field, its input and effects as objects
    (``saga history --json``): those at their defaults are stored without them."""
    found: dict[str, Any] = {}
    for field in msgspec.structs.fields(entry):
        value = getattr(entry, field.name)
        found[field.encode_name] = (
            msgspec.json.decode(value) if isinstance(value, msgspec.Raw) else value
        )
    as_json: dict[str, Any] = msgspec.to_builtins(found)
    return as_json


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


def _columns(detail: bool) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    if detail:
        table.add_column("at")
        table.add_column("v", justify="right")
        table.add_column("rev", justify="right")
    table.add_column("time", justify="right", style="dim")
    table.add_column("input")
    table.add_column("decided")
    if detail:
        table.add_column("status")
    return table


def _status(entry: HistoryEntry) -> Text:
    """The status the entry left the saga in; an arrow when it moved it."""
    after = entry.status_after or ""
    if entry.status_before is not None and entry.status_before != after:
        return Text(f"{entry.status_before} -> {after}", style="bold")
    return Text(after, style="dim")


def print_timeline(
    entries: Sequence[HistoryEntry],
    console: Console,
    *,
    events: Sequence[BreakerEvent] = (),
    services: Mapping[str, str] | None = None,
    detail: bool = False,
) -> None:
    """Print a saga's history as a table of time, input and what was decided.

    ``events`` (oldest first) are breaker transitions to show among the entries;
    ``services`` names each step's service, to place them. ``detail`` adds each
    entry's time of day (UTC), definition version, revision and status: the
    operator's view, where the compact one is the demo's.
    """
    if not entries:
        return
    inputs: list[dict[str, Any]] = [msgspec.json.decode(e.input) for e in entries]
    slots = [_slot(event, entries, inputs, services or {}) for event in events]
    table = _columns(detail)
    start = entries[0].at
    breakers: dict[str, str] = {}
    for i in range(len(entries) + 1):
        for event, slot in zip(events, slots, strict=True):
            if slot == i:
                breakers[event.service] = event.new
                offset = (event.at - start).total_seconds()
                extra = [event.at.isoformat(timespec="milliseconds"), "", ""] if detail else []
                table.add_row(
                    *extra,
                    f"{offset:+,.1f}s",
                    Text(f"breaker {event.service}", style="cyan"),
                    Text(f"{event.old} -> {event.new}: {event.reason}", style="cyan"),
                    *([""] if detail else []),
                )
        if i == len(entries):
            break
        entry, inp = entries[i], inputs[i]
        offset = (entry.at - start).total_seconds()
        style = "yellow" if entry.refused else "" if entry.changed else "dim"
        note = Text(entry.note, style=style)
        breaker = breakers.get(str(inp.get("service")), "closed")
        described = Text(describe_input(inp, breaker))
        if detail:
            table.add_row(
                entry.at.isoformat(timespec="milliseconds"),
                str(entry.version or "?"),
                str(entry.revision),
                f"{offset:+,.1f}s",
                described,
                note,
                _status(entry),
            )
        else:
            table.add_row(f"{offset:+,.1f}s", described, note)
    console.print(table)
