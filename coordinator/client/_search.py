"""Finding sagas for an operator: filters, and pages newest first with a cursor.

Pages follow the store's started index (`StartedSagas`): the order of a saga in
it never changes, so following ``next`` meets every saga once, however many
change meanwhile. Each saga of the index is read and matched against the
filter; a request reads at most `SCAN_BUDGET` of them, so a page of a selective
filter may hold fewer than asked, with a ``next`` to go on (``next`` None: the
end). A saga's waits come from its state and the shapes the coordinators
recorded (which service a step calls, which signal a wait expects).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from coordinator._errors import RequestRefusedError
from coordinator.client._shapes import DefinitionShape
from coordinator.core import SagaState
from coordinator.ports import SagaStore, StartedSagas

__all__ = ["SCAN_BUDGET", "SagaFilter", "SagaPage", "SagaSummary", "search_sagas"]

SCAN_BUDGET = 2000
"""Sagas read from the index by one request at most."""

OPEN_STEP = frozenset(
    {
        "dispatched",
        "retrying",
        "awaiting_service",
        "waiting",
        "compensating",
        "compensation_awaiting_service",
    }
)
"""The step statuses of a step the saga waits on."""


class SearchStore(SagaStore, StartedSagas, Protocol):
    """What `search_sagas` reads."""


class SagaFilter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What to look for; every field given must match (None: any).

    Attributes:
        name: The definition's name.
        status: The saga's status.
        id_prefix: The start of the saga id (the business key).
        started_from: Started at or after.
        started_to: Started before.
        updated_from: Last changed at or after.
        updated_to: Last changed before.
        step: Waits on this step (sent, retrying, parked, waiting, compensating).
        service: Waits on a step of this participant service.
        signal: Waits for this signal.
    """

    name: str | None = None
    status: str | None = None
    id_prefix: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    step: str | None = None
    service: str | None = None
    signal: str | None = None


class SagaSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One saga in a list: where it is, without its data.

    Attributes:
        waiting_on: The steps it waits on (see `SagaFilter.step`).
    """

    saga_id: str
    name: str
    version: int
    status: str
    paused: bool
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    reason: str | None
    waiting_on: list[str]


class SagaPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of sagas, newest first; ``next`` continues after it (None: no more)."""

    sagas: list[SagaSummary]
    next: str | None


def _cursor(at: datetime, saga_id: str) -> str:
    raw = msgspec.json.encode([round(at.timestamp() * 1000), saga_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ms, saga_id = msgspec.json.decode(raw, type=tuple[int, str])
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise RequestRefusedError("cursor: not a cursor from a previous page") from exc
    return datetime.fromtimestamp(ms / 1000, UTC), saga_id


def _within(when: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or when >= start) and (end is None or when < end)


def _matches(state: SagaState[Any], f: SagaFilter, shape: DefinitionShape | None) -> bool:
    if (f.name and state.name != f.name) or (f.status and state.status != f.status):
        return False
    if f.id_prefix and not state.saga_id.startswith(f.id_prefix):
        return False
    if not _within(state.started_at, f.started_from, f.started_to):
        return False
    if not _within(state.updated_at, f.updated_from, f.updated_to):
        return False
    open_steps = [n for n, s in state.steps.items() if s.status in OPEN_STEP]
    if f.step and f.step not in open_steps:
        return False
    if f.service:
        services = {shape.steps[n].service for n in open_steps if shape and n in shape.steps}
        if f.service not in services:
            return False
    if f.signal:
        signals = {
            shape.waits[n].signal
            for n in open_steps
            if shape and n in shape.waits and state.steps[n].status == "waiting"
        }
        if f.signal not in signals:
            return False
    return True


def summary(state: SagaState[Any]) -> SagaSummary:
    """The list row of ``state``."""
    return SagaSummary(
        saga_id=state.saga_id,
        name=state.name,
        version=state.version,
        status=state.status,
        paused=state.paused,
        started_at=state.started_at,
        updated_at=state.updated_at,
        finished_at=state.finished_at,
        reason=state.reason,
        waiting_on=[n for n, s in state.steps.items() if s.status in OPEN_STEP],
    )


async def search_sagas(
    store: SearchStore,
    where: SagaFilter,
    *,
    shapes: Mapping[str, DefinitionShape],
    cursor: str | None = None,
    limit: int = 50,
) -> SagaPage:
    """A page of the sagas matching ``where``, newest started first.

    Raises:
        RequestRefusedError: ``cursor`` is not one this function returned.
    """
    before = _position(cursor) if cursor else None
    found: list[SagaSummary] = []
    read = 0
    while read < SCAN_BUDGET:
        rows = await store.started(before=before, limit=min(limit, 500))
        if not rows:
            return SagaPage(sagas=found, next=None)
        for saga_id, at in rows:
            read += 1
            before = (at, saga_id)
            stored = await store.load(saga_id)
            if stored is None:
                continue
            state = msgspec.json.decode(stored.state, type=SagaState[Any])
            if _matches(state, where, shapes.get(f"{state.name}@{state.version}")):
                found.append(summary(state))
                if len(found) == limit:
                    return SagaPage(sagas=found, next=_cursor(at, saga_id))
    assert before is not None
    return SagaPage(sagas=found, next=_cursor(*before))
