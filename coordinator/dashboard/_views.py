"""What the dashboard's pages show, from a saga's state and history: the rows of
its timeline (the content of ``saga history``), its steps with their attempts and
durations, its definition graph with the current position, and its trace link.

Pure functions of what was read: the routes read, these shape, the templates print.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from coordinator._graph import to_mermaid
from coordinator.client import DefinitionShape
from coordinator.core import SagaDefinition, SagaState
from coordinator.ports import HistoryEntry
from coordinator.replay import describe_input

__all__ = ["StepRow", "TimelineRow", "graph_of", "step_rows", "timeline", "trace_link"]

# The step statuses that say where a saga is now (its current position).
_CURRENT = {"dispatched", "retrying", "waiting", "awaiting_service", "compensating"}
_DONE = {"succeeded", "skipped"}
_UNDONE = {"compensated"}
_FAILED = {"failed", "compensation_failed"}


@dataclass(frozen=True)
class TimelineRow:
    """One entry of a saga's history, as ``saga history`` prints it."""

    at: str
    offset: str
    version: str
    revision: int
    input: str
    note: str
    status: str
    moved: bool
    refused: bool
    changed: bool


def timeline(entries: Sequence[HistoryEntry]) -> list[TimelineRow]:
    """The rows of ``entries``: time, offset from the first, input, decision, status."""
    if not entries:
        return []
    start = entries[0].at
    rows = []
    for entry in entries:
        inp: Mapping[str, Any] = msgspec.json.decode(entry.input)
        after = entry.status_after or ""
        moved = entry.status_before is not None and entry.status_before != after
        rows.append(
            TimelineRow(
                at=entry.at.isoformat(timespec="milliseconds"),
                offset=f"{(entry.at - start).total_seconds():+,.1f}s",
                version=str(entry.version or "?"),
                revision=entry.revision,
                input=describe_input(inp if isinstance(inp, Mapping) else {}),
                note=entry.note,
                status=f"{entry.status_before} \u2192 {after}" if moved else after,
                moved=moved,
                refused=bool(entry.refused),
                changed=entry.changed,
            )
        )
    return rows


@dataclass(frozen=True)
class StepRow:
    """One step (or wait) of a saga."""

    name: str
    status: str
    attempts: int
    compensations: int
    error: str
    duration: str
    current: bool


def _first_sent(history: Sequence[HistoryEntry]) -> dict[str, datetime]:
    """When each step's first action went out, from the effects in its history."""
    sent: dict[str, datetime] = {}
    for entry in history:
        effects = msgspec.json.decode(entry.effects)
        for effect in effects if isinstance(effects, list) else ():
            if effect.get("type") == "Dispatch" and effect.get("kind") == "action":
                sent.setdefault(str(effect.get("step")), entry.at)
    return sent


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    return str(timedelta(seconds=round(seconds)))


def step_rows(
    state: SagaState[Any], history: Sequence[HistoryEntry], now: datetime
) -> list[StepRow]:
    """Each step in its definition's order: status, attempts, how long it took (or
    has taken so far, while it runs)."""
    sent = _first_sent(history)
    rows = []
    for name, step in state.steps.items():
        began = sent.get(name)
        if began is None:
            duration = ""
        elif step.finished_at is not None:
            duration = _span((step.finished_at - began).total_seconds())
        elif step.status in _CURRENT:
            duration = f"{_span((now - began).total_seconds())} so far"
        else:
            duration = ""
        rows.append(
            StepRow(
                name=name,
                status=step.status,
                attempts=step.attempt,
                compensations=step.compensation_attempt,
                error=step.error or "",
                duration=duration,
                current=step.status in _CURRENT and not state.terminal,
            )
        )
    return rows


def trace_link(template: str, traceparent: str) -> str:
    """The tracing UI's page of the saga's trace; empty without a template or a trace.

    ``traceparent`` is W3C: ``00-<trace id>-<span id>-<flags>``.
    """
    parts = traceparent.split("-")
    if not template or len(parts) != 4 or not re.fullmatch(r"[0-9a-f]{32}", parts[1]):
        return ""
    return template.replace("{trace_id}", parts[1])


def _id(name: str) -> str:
    # The node ids of ``coordinator._graph.to_mermaid``: the same rule, so the
    # classes below land on its nodes.
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _from_shape(shape: DefinitionShape) -> str:
    """A flowchart of a definition known only by its recorded shape (no code here):
    its steps and waits in order, the branches of a parallel side by side."""
    nodes: dict[int, list[str]] = {}
    lines = ["flowchart TD", "    start([start])"]
    for name, step in shape.steps.items():
        nodes.setdefault(step.node, []).append(_id(name))
        lines.append(f'    {_id(name)}["{name}<br/>{step.service}"]')
    for name, wait in shape.waits.items():
        nodes.setdefault(wait.node, []).append(_id(name))
        lines.append(f'    {_id(name)}(["wait for {wait.signal}"])')
    previous = ["start"]
    for node in sorted(nodes):
        lines.extend(f"    {p} --> {c}" for p in previous for c in nodes[node])
        previous = nodes[node]
    lines.append("    done([completed])")
    lines.extend(f"    {p} --> done" for p in previous)
    return "\n".join(lines) + "\n"


def graph_of(
    state: SagaState[Any],
    definition: SagaDefinition[Any] | None,
    shape: DefinitionShape | None,
) -> str:
    """The Mermaid flowchart of the saga's definition version, each step coloured by
    its status and the current position outlined; empty when neither the definition
    nor its recorded shape is known."""
    if definition is not None:
        chart = to_mermaid(definition)
    elif shape is not None:
        chart = _from_shape(shape)
    else:
        return ""
    classes: dict[str, list[str]] = {"done": [], "undone": [], "failed": [], "current": []}
    for name, step in state.steps.items():
        if step.status in _CURRENT and not state.terminal:
            classes["current"].append(_id(name))
        elif step.status in _DONE:
            classes["done"].append(_id(name))
        elif step.status in _UNDONE:
            classes["undone"].append(_id(name))
        elif step.status in _FAILED:
            classes["failed"].append(_id(name))
    if state.status == "completed":
        classes["done"].append("done")
    lines = [
        "    classDef done fill:#bbf7d0,stroke:#15803d,color:#052e16",
        "    classDef undone fill:#e5e7eb,stroke:#6b7280,color:#111827",
        "    classDef failed fill:#fecaca,stroke:#b91c1c,color:#450a0a",
        "    classDef current fill:#fde68a,stroke:#d97706,stroke-width:4px,color:#451a03",
    ]
    lines.extend(f"    class {','.join(ids)} {cls}" for cls, ids in classes.items() if ids)
    return chart + "\n".join(lines) + "\n"
