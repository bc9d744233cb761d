"""Pictures of the saga semantics, in Mermaid: a definition as a flowchart, and the
step-status table of the core as a state diagram. Shared by ``saga graph`` and,
later, the dashboard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from coordinator.core import STEP_TRANSITIONS, ParallelDef, SagaDefinition, StepDef, WaitDef

__all__ = ["position_mermaid", "states_mermaid", "to_mermaid"]

D = TypeVar("D")


def to_mermaid(definition: SagaDefinition[D]) -> str:
    """Render a definition as a Mermaid flowchart: forward edges solid, undo dashed."""
    lines = ["flowchart TD", "    start([start])"]
    previous = ["start"]
    undo_lines: list[str] = []

    def step_box(step: StepDef[D]) -> str:
        extras = []
        if step.retry.attempts > 1:
            extras.append(f"retry x{step.retry.attempts}")
        if step.timeout is not None:
            extras.append(f"timeout {step.timeout}")
        if step.when is not None:
            extras.append("conditional")
        if step.pivot:
            extras.append("pivot")
        label = f"{step.name}<br/>{step.service}" + (
            f"<br/><i>{', '.join(extras)}</i>" if extras else ""
        )
        if step.undo is not None:
            undo_lines.append(
                f"    {_id(step.name)} -.->|undo| {_id(step.name)}_undo[/undo {step.name}/]"
            )
        shape = f'{{{{"{label}"}}}}' if step.pivot else f'["{label}"]'
        return f"    {_id(step.name)}{shape}"

    for node in definition.nodes:
        if isinstance(node, ParallelDef):
            lines.append(f"    subgraph {_id(node.name)}[{node.name}: parallel]")
            lines.extend("    " + step_box(b) for b in node.branches)
            lines.append("    end")
            current = [_id(b.name) for b in node.branches]
        elif isinstance(node, WaitDef):
            timeout = f"<br/><i>timeout {node.timeout}</i>" if node.timeout else ""
            lines.append(f'    {_id(node.name)}(["wait for {node.signal}{timeout}"])')
            current = [_id(node.name)]
        else:
            lines.append(step_box(node))
            current = [_id(node.name)]
        lines.extend(f"    {p} --> {c}" for p in previous for c in current)
        previous = current
    lines.append("    done([completed])")
    lines.extend(f"    {p} --> done" for p in previous)
    return "\n".join(lines + undo_lines) + "\n"


# Where a saga is, by its steps' statuses: what it waits on stands out, what is done
# is quiet, what went wrong is red. Statuses not listed keep the plain box.
_CLASSES = {
    "current": (
        "dispatched",
        "retrying",
        "awaiting_service",
        "waiting",
        "compensating",
        "compensation_awaiting_service",
    ),
    "done": ("succeeded", "skipped", "compensated"),
    "failed": ("failed", "timed_out", "compensation_failed", "abandoned"),
}
_STYLES = {
    "current": "fill:#fde68a,stroke:#b45309,stroke-width:3px",
    "done": "fill:#d1fae5,stroke:#047857",
    "failed": "fill:#fee2e2,stroke:#b91c1c",
}


def position_mermaid(definition: SagaDefinition[D], steps: Mapping[str, str]) -> str:
    """`to_mermaid` with a saga's position: ``steps`` is each step's (or wait's) status;
    the open ones are classed ``current``, settled ones ``done`` or ``failed``."""
    lines = [to_mermaid(definition).rstrip("\n")]
    for name, style in _STYLES.items():
        lines.append(f"    classDef {name} {style}")
    for name, statuses in _CLASSES.items():
        ids = [_id(step) for step, status in steps.items() if status in statuses]
        if ids:
            lines.append(f"    class {','.join(ids)} {name}")
    return "\n".join(lines) + "\n"


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def states_mermaid() -> str:
    """Render the step statuses and the moves the core allows between them
    (``STEP_TRANSITIONS``, which the core checks on every change) as a state diagram."""
    lines = ["stateDiagram-v2", "    [*] --> pending"]
    for before, afters in STEP_TRANSITIONS.items():
        lines.extend(f"    {before} --> {after}" for after in sorted(afters))
    return "\n".join(lines) + "\n"
