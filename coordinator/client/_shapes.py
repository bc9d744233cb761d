"""The shape of a definition: what an operator's tools may know of it without its code.

An operator's machine has no saga code, yet ``saga stuck`` must say which signal a
wait expects and which service a parked step needs. Each coordinator records, at
start, the shape of every definition version it runs (``record_deployment`` in
``coordinator.service``): for ``name@version``, its steps and waits in order, each
step's service and whether it has an undo, each wait's signal. It is a small,
stable JSON document; nothing of it is read from history notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from coordinator.core import ParallelDef, SagaDefinition, StepDef

__all__ = ["DefinitionShape", "StepShape", "WaitShape", "shape_of", "shapes_of"]


class StepShape(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One step of a definition.

    Attributes:
        node: The index of its node in the definition (the saga's ``cursor``
            when it is there); the branches of a parallel share their node's.
        service: The participant service its commands go to.
        undo: It sends a compensation as well as its action.
    """

    node: int
    service: str
    undo: bool = False


class WaitShape(msgspec.Struct, frozen=True, kw_only=True):
    """One wait of a definition: its node's index and the signal it expects."""

    node: int
    signal: str


class DefinitionShape(msgspec.Struct, frozen=True, kw_only=True):
    """The steps and waits of one definition version, by name."""

    steps: dict[str, StepShape] = msgspec.field(default_factory=dict)
    waits: dict[str, WaitShape] = msgspec.field(default_factory=dict)

    def node(self, name: str) -> int | None:
        """The node index of the step or wait ``name``; ``None`` if there is none."""
        if (step := self.steps.get(name)) is not None:
            return step.node
        wait = self.waits.get(name)
        return wait.node if wait is not None else None


def shape_of(definition: SagaDefinition[Any]) -> DefinitionShape:
    """The shape of ``definition`` (for ``definition.key``, ``name@version``)."""
    steps: dict[str, StepShape] = {}
    waits: dict[str, WaitShape] = {}

    def add(step: StepDef[Any], node: int) -> None:
        steps[step.name] = StepShape(node=node, service=step.service, undo=step.undo is not None)

    for node, part in enumerate(definition.nodes):
        if isinstance(part, ParallelDef):
            for branch in part.branches:
                add(branch, node)
        elif isinstance(part, StepDef):
            add(part, node)
        else:
            waits[part.name] = WaitShape(node=node, signal=part.signal)
    return DefinitionShape(steps=steps, waits=waits)


def shapes_of(definitions: Iterable[SagaDefinition[Any]]) -> dict[str, DefinitionShape]:
    """The shape of each definition, by ``name@version``."""
    return {d.key: shape_of(d) for d in definitions}
