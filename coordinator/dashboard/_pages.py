"""The dashboard's pages that read: sagas, one saga, breakers, dead letters, stuck
sagas; each with the fragment htmx polls to keep it live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from coordinator.client import (
    as_json,
    breaker_statuses,
    dead_letter_json,
    find_stuck,
    list_dead_letters,
)
from coordinator.core import SagaDefinition, SagaState
from coordinator.dashboard._backend import Backend, BackendFactory
from coordinator.dashboard._render import Req, page
from coordinator.dashboard._views import graph_of, step_rows, timeline, trace_link
from coordinator.service import Payloads, Principal

__all__ = ["STATUSES", "read_routes"]

STATUSES = ("running", "compensating", "completed", "compensated", "failed", "cancelled")
_SHOWN = 100  # sagas on the list page
_SCAN = 5000  # ids read to filter by prefix
_PREVIEW = 300  # characters of a dead letter's body


async def _listing(backend: Backend, name: str, status: str, prefix: str) -> dict[str, Any]:
    store = backend.operator.store
    ids = await store.find(name=name or None, status=status or None, limit=_SCAN)
    ids = [i for i in ids if i.startswith(prefix)][:_SHOWN]
    states = await asyncio.gather(*(backend.client.state(i) for i in ids))
    names = sorted(backend.operator.names | ({name} if name else set()))
    counts = await store.counts(names, STATUSES, ())
    by_status = {s: sum(c.get(s, 0) for c in counts.by_status.values()) for s in STATUSES}
    return {
        "sagas": [s for s in states if s is not None],
        "counts": by_status,
        "names": names,
        "filters": {"name": name, "status": status, "prefix": prefix},
    }


def _saga_context(
    backend: Backend,
    state: SagaState[Any],
    history: Sequence[Any],
    definitions: Mapping[str, SagaDefinition[Any]],
) -> dict[str, Any]:
    key = f"{state.name}@{state.version}"
    return {
        "saga": state,
        "rows": timeline(history),
        "steps": step_rows(state, history, datetime.now(UTC)),
        "graph": graph_of(state, definitions.get(key), backend.operator.shapes.get(key)),
        "trace": trace_link(backend.settings.trace_url, state.trace),
        "data": _pretty(state.data),
    }


def _pretty(value: Any) -> str:
    return json.dumps(as_json(value), indent=2, ensure_ascii=False, sort_keys=True)


def read_routes(
    backends: BackendFactory, definitions: Mapping[str, SagaDefinition[Any]]
) -> list[Any]:
    """The read-only handlers (any role)."""

    @get("/sagas")
    async def sagas(
        request: Req,
        name: FromQuery[str] = "",
        status: FromQuery[str] = "",
        prefix: FromQuery[str] = "",
    ) -> Response[str]:
        async with backends() as backend:
            listing = await _listing(backend, name, status, prefix)
        return page(request, "sagas.html", statuses=STATUSES, **listing)

    @get("/sagas/rows")
    async def saga_rows(
        request: Req,
        name: FromQuery[str] = "",
        status: FromQuery[str] = "",
        prefix: FromQuery[str] = "",
    ) -> Response[str]:
        async with backends() as backend:
            listing = await _listing(backend, name, status, prefix)
        return page(request, "sagas_live.html", statuses=STATUSES, **listing)

    async def _read(request: Req, saga_id: FromPath[str]) -> dict[str, Any]:
        async with backends() as backend:
            state, history = await asyncio.gather(
                backend.client.state(saga_id), backend.client.history(saga_id)
            )
            if state is None:
                raise NotFoundException(f"no saga with id {saga_id}")
            # Sensitive data: redacted, unless this user may read payloads (audited).
            who = request.user
            reveal = isinstance(who, Principal) and who.payloads
            name = who.name if isinstance(who, Principal) else "?"
            payloads = Payloads(backend.settings.keyring())
            state = payloads.state(state, who=name, reveal=reveal)
            history = payloads.history(saga_id, history, who=name, reveal=reveal)
            return _saga_context(backend, state, history, definitions)

    @get("/sagas/{saga_id:str}")
    async def saga(request: Req, saga_id: FromPath[str]) -> Response[str]:
        return page(request, "saga.html", **await _read(request, saga_id))

    @get("/sagas/{saga_id:str}/live")
    async def saga_live(
        request: Req, saga_id: FromPath[str], rev: FromQuery[int] = -1
    ) -> Response[str]:
        context = await _read(request, saga_id)
        if context["saga"].revision == rev:
            # Nothing changed: htmx keeps what it shows (and the graph is not redrawn).
            return Response("", status_code=204)
        return page(request, "saga_live.html", **context)

    return [sagas, saga_rows, saga, saga_live, *_repair_routes(backends)]


def _repair_routes(backends: BackendFactory) -> list[Any]:
    """Breakers, dead letters, stuck sagas."""

    async def _breakers() -> dict[str, Any]:
        async with backends() as backend:
            rows = await breaker_statuses(backend.breakers, backend.operator.store)
            parked = {r.service: await backend.operator.store.parked(r.service, 20) for r in rows}
        return {"breakers": rows, "parked": parked, "now": datetime.now(UTC)}

    @get("/breakers")
    async def breakers(request: Req) -> Response[str]:
        return page(request, "breakers.html", **await _breakers())

    @get("/breakers/live")
    async def breakers_live(request: Req) -> Response[str]:
        return page(request, "breakers_live.html", **await _breakers())

    @get("/dead-letters")
    async def dead_letters(request: Req, queue: FromQuery[str] = "") -> Response[str]:
        async with backends() as backend:
            dead = await backend.operator.dead_letters()
            letters = await list_dead_letters(
                dead, backend.operator.queues, queue=queue or None, limit=100
            )
            queues = backend.operator.queues
        shown = []
        for letter in letters:
            shown_letter = dead_letter_json(letter)
            body = shown_letter.get("body") or shown_letter.get("body_base64", "")
            shown_letter["preview"] = body[:_PREVIEW] + ("\u2026" if len(body) > _PREVIEW else "")
            shown.append(shown_letter)
        return page(request, "dead_letters.html", letters=shown, queues=queues, queue=queue)

    @get("/stuck")
    async def stuck(request: Req, minutes: FromQuery[float] = 5.0) -> Response[str]:
        async with backends() as backend:
            found = await find_stuck(
                backend.operator.store,
                timedelta(minutes=minutes),
                shapes=backend.operator.shapes,
                names=backend.operator.names or None,
            )
        return page(request, "stuck.html", stuck=found, minutes=minutes)

    return [breakers, breakers_live, dead_letters, stuck]
