"""The bodies the API takes and the few it answers with that have no type elsewhere.

The sagas, breakers, stuck sagas and shapes are answered as the client's own
Structs (``SagaState``, ``SagaPage``, ``BreakerStatus``, ``Stuck``,
``DefinitionShape``); these are the requests, and the answers that pair them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from coordinator.client import DefinitionShape
from coordinator.core import SagaState

__all__ = [
    "ActionResult",
    "CancelRequest",
    "Definition",
    "Graph",
    "OverrideRequest",
    "PauseRequest",
    "Problem",
    "PurgeRequest",
    "RedriveRequest",
    "SignalRequest",
    "StartRequest",
]


class StartRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Start a saga; with ``saga_id``, a second start with the same input is the same saga."""

    name: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    saga_id: str | None = None


class SignalRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A signal for a saga's wait (e.g. ``approval``)."""

    name: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = "cancelled by operator"


class PauseRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``hold_deadline``: stop the saga's deadline too; on resume it moves on by the pause."""

    hold_deadline: bool = False


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """What an action did: the history entry's note, and the saga as it is now."""

    note: str
    saga: SagaState[Any]


class Graph(msgspec.Struct, frozen=True, kw_only=True):
    """The saga's definition version in Mermaid, its open steps highlighted."""

    saga_id: str
    definition: str
    mermaid: str


class OverrideRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Why, for the breaker's event log (required)."""

    reason: str


class RedriveRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Which dead letters go back to their exchange: ``queue`` (None: every queue) and
    ``message_ids`` (None: all of them)."""

    queue: str | None = None
    message_ids: list[str] | None = None


class PurgeRequest(msgspec.Struct, frozen=True, kw_only=True):
    queue: str | None = None


class Definition(msgspec.Struct, frozen=True, kw_only=True):
    """A definition version the coordinators run, with its steps and waits."""

    name: str
    version: int
    shape: DefinitionShape


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An error: its HTTP status and what went wrong (the field, for a 422)."""

    status_code: int
    detail: str
