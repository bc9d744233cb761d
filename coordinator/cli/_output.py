"""What the commands print: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from coordinator.client import as_json
from coordinator.core import SagaState
from coordinator.ports import HistoryEntry
from coordinator.replay import entry_json, print_timeline

__all__ = ["print_history", "print_json", "print_saga", "print_sagas", "print_topology"]

console = Console()

# The fields of a saga ``saga list --json`` shows.
_LISTED = ("saga_id", "name", "version", "status", "reason", "started_at", "updated_at")


def print_json(value: object) -> None:
    typer.echo(msgspec.json.encode(value).decode())


def print_saga(state: SagaState[Any], *, as_json_: bool = False) -> None:
    """One saga: a heading, a table of its steps and its data; or every field as JSON."""
    if as_json_:
        print_json(as_json(state))
        return
    console.print(
        f"[bold]{state.saga_id}[/bold]  {state.name} v{state.version}  "
        f"[bold]{state.status}[/bold]"
        + (f"  ({state.reason})" if state.reason else "")
        + (f"  [yellow]paused by {state.paused_by or '?'}[/yellow]" if state.paused else "")
    )
    table = Table("step", "status", "attempt", "error", box=None)
    for name, step in state.steps.items():
        table.add_row(name, step.status, str(step.attempt), step.error or "")
    console.print(table)
    console.print(f"data: {json.dumps(state.data)}")


def print_sagas(found: Sequence[SagaState[Any]], *, as_json_: bool = False) -> None:
    if as_json_:
        print_json([{k: v for k, v in as_json(s).items() if k in _LISTED} for s in found])
        return
    table = Table("saga", "name", "status", "updated", "reason", box=None)
    for s in found:
        table.add_row(s.saga_id, s.name, s.status, _stamp(s.updated_at), s.reason or "")
    console.print(table)


def print_history(entries: Sequence[HistoryEntry], *, as_json_: bool = False) -> None:
    """A saga's timeline: each entry's time, definition version, revision, input,
    decision and status; or every field of every entry as JSON."""
    if as_json_:
        print_json([entry_json(e) for e in entries])
        return
    print_timeline(entries, console, detail=True)


def print_topology(document: dict[str, Any]) -> None:
    """The queues of a RabbitMQ definitions document: type and what feeds each one."""
    table = Table("queue", "type", "bound to", box=None)
    for queue in document["queues"]:
        feeds = [
            f"{b['source']} {b['routing_key']}"
            for b in document["bindings"]
            if b["destination"] == queue["name"]
        ]
        table.add_row(queue["name"], queue["arguments"].get("x-queue-type", ""), ", ".join(feeds))
    console.print(table)


def _stamp(at: datetime) -> str:
    # As stored and as --json prints it (msgspec's RFC 3339, "Z" for UTC).
    text: str = msgspec.to_builtins(at)
    return text
