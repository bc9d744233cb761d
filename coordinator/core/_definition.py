"""The frozen shape of a saga definition, as the core reads it.

Saga authors build these through :mod:`coordinator._dsl`, which validates them and
wraps typed callbacks so that the core sees only plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, Literal, TypeVar

import msgspec

from coordinator.core._retry import Retry

__all__ = [
    "Node",
    "OnTimeout",
    "OnUnavailable",
    "ParallelDef",
    "SagaDefinition",
    "StepDef",
    "WaitDef",
]

D = TypeVar("D")

JSONObject = dict[str, object]
OnUnavailable = Literal["wait", "compensate"]
OnTimeout = Literal["compensate", "continue"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StepDef(Generic[D]):
    """A command sent to one participant service, and how to undo it."""

    name: str
    service: str
    send: Callable[[D], msgspec.Struct]
    undo: Callable[[D], msgspec.Struct] | None = None
    apply_result: Callable[[D, JSONObject], D] | None = None
    result_type: type[object] | None = None
    retry: Retry = field(default_factory=Retry)
    timeout: timedelta | None = None
    when: Callable[[D], bool] | None = None
    on_unavailable: OnUnavailable = "wait"
    pivot: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WaitDef(Generic[D]):
    """A pause until an external signal arrives (a human approval, a webhook).

    ``data_type`` is what the signal's data must decode into; a signal whose
    data does not fit is refused when it arrives and the wait goes on.
    """

    name: str
    signal: str
    data_type: type[object] | None = None
    timeout: timedelta | None = None
    on_timeout: OnTimeout = "compensate"
    when: Callable[[D], bool] | None = None
    accept: Callable[[D, JSONObject], bool] | None = None
    apply_signal: Callable[[D, JSONObject], D] | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ParallelDef(Generic[D]):
    """Steps sent at once; the saga goes on when every branch has succeeded."""

    name: str
    branches: tuple[StepDef[D], ...]


Node = StepDef[D] | WaitDef[D] | ParallelDef[D]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SagaDefinition(Generic[D]):
    """A validated, immutable saga: what :func:`coordinator.core.decide` interprets."""

    name: str
    version: int
    data_type: type[D]
    nodes: tuple[Node[D], ...]
    deadline: timedelta | None
    compensation_retry: Retry
    steps: Mapping[str, StepDef[D]]
    waits: Mapping[str, WaitDef[D]]

    @property
    def key(self) -> str:
        """``name@version``: what a running instance is pinned to."""
        return f"{self.name}@{self.version}"
