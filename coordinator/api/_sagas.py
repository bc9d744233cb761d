"""``/api/sagas``: find, read and act on sagas, over the client the CLI uses.

Each action waits until a coordinator took it (``coordinator.client``'s
``*_checked``) and answers the saga as it is then; who asked (the token's name)
is written in the saga's history as ``by``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from coordinator._graph import position_mermaid
from coordinator.api._backend import Backend, Served
from coordinator.api._errors import refused
from coordinator.api._types import (
    ActionResult,
    CancelRequest,
    Graph,
    PauseRequest,
    SignalRequest,
    StartRequest,
)
from coordinator.client import (
    SagaFilter,
    SagaPage,
    cancel_checked,
    pause_checked,
    resume_checked,
    retry_checked,
    search_sagas,
    signal_checked,
    start_checked,
)
from coordinator.core import SagaState
from coordinator.ports import HistoryEntry
from coordinator.replay import entry_json
from coordinator.service import Principal, requires

__all__ = ["sagas_router"]

AnyRequest = Request[Principal, Any, Any]
_ACTION: dict[str, Any] = {"guards": [requires("operator")], "status_code": 200}


async def _state(
    backend: Backend, saga_id: str, request: AnyRequest | None = None
) -> SagaState[Any]:
    """The saga, sensitive data redacted unless ``request``'s principal may read it."""
    state = await backend.client.state(saga_id)
    if state is None:
        raise NotFoundException(f"no saga with id {saga_id}")
    who = request.user if request is not None else None
    return backend.payloads.state(state, who=_who(who), reveal=who is not None and who.payloads)


def _who(principal: Principal | None) -> str:
    return "?" if principal is None else principal.name


@get("/", summary="List and search sagas, newest started first")
async def list_sagas(
    backend: Served,
    name: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    id_prefix: FromQuery[str | None] = None,
    started_from: FromQuery[datetime | None] = None,
    started_to: FromQuery[datetime | None] = None,
    updated_from: FromQuery[datetime | None] = None,
    updated_to: FromQuery[datetime | None] = None,
    step: FromQuery[str | None] = None,
    service: FromQuery[str | None] = None,
    signal: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> SagaPage:
    where = SagaFilter(
        name=name,
        status=status,
        id_prefix=id_prefix,
        started_from=started_from,
        started_to=started_to,
        updated_from=updated_from,
        updated_to=updated_to,
        step=step,
        service=service,
        signal=signal,
    )
    with refused():
        return await search_sagas(
            backend.store, where, shapes=await backend.shapes(), cursor=cursor, limit=limit
        )


@get("/{saga_id:str}", summary="One saga: status, steps with attempts and times, data")
async def show_saga(request: AnyRequest, backend: Served, saga_id: FromPath[str]) -> SagaState[Any]:
    return await _state(backend, saga_id, request)


@get("/{saga_id:str}/history", summary="Every input of a saga and what was decided")
async def saga_history(
    request: AnyRequest, backend: Served, saga_id: FromPath[str]
) -> list[dict[str, Any]]:
    entries = await backend.client.history(saga_id)
    if not entries:
        raise NotFoundException(f"no saga with id {saga_id}")
    who = request.user
    shown = backend.payloads.history(saga_id, entries, who=who.name, reveal=who.payloads)
    return [entry_json(e) for e in shown]


@get("/{saga_id:str}/graph", summary="The saga's definition in Mermaid, where it is highlighted")
async def saga_graph(backend: Served, saga_id: FromPath[str]) -> Graph:
    state = await _state(backend, saga_id)
    key = f"{state.name}@{state.version}"
    definition = backend.definitions.get(key)
    if definition is None:
        raise NotFoundException(
            f"definition {key} is not loaded here (serve the API with `saga run` or "
            "`saga api --saga MODULE:ATTRIBUTE`)"
        )
    steps = {name: step.status for name, step in state.steps.items()}
    return Graph(saga_id=saga_id, definition=key, mermaid=position_mermaid(definition, steps))


@post("/", summary="Start a saga (idempotent by saga_id)", guards=[requires("operator")])
async def start_saga(
    request: AnyRequest, backend: Served, data: JSONBody[StartRequest]
) -> SagaState[Any]:
    definition = next((d for d in backend.definitions.values() if d.name == data.name), None)
    with refused():
        saga_id = await start_checked(
            backend.client,
            data.name,
            data.data,
            data.saga_id,
            accept_timeout=backend.accept_timeout,
            data_type=None if definition is None else definition.data_type,
            by=request.user.name,
        )
    return await _state(backend, saga_id)


async def _acted(backend: Served, saga_id: FromPath[str], entry: HistoryEntry) -> ActionResult:
    return ActionResult(note=entry.note, saga=await _state(backend, saga_id))


@post(
    "/{saga_id:str}/signal",
    summary="Send a signal to a saga's wait",
    guards=[requires("operator")],
    status_code=200,
)
async def signal_saga(
    backend: Served,
    request: AnyRequest,
    saga_id: FromPath[str],
    data: JSONBody[SignalRequest],
) -> ActionResult:
    await _state(backend, saga_id)
    with refused():
        entry = await signal_checked(
            backend.client,
            saga_id,
            data.name,
            data.data,
            by=request.user.name,
            accept_timeout=backend.accept_timeout,
        )
    return await _acted(backend, saga_id, entry)


@post(
    "/{saga_id:str}/cancel",
    summary="Cancel a saga: what it did is compensated",
    guards=[requires("operator")],
    status_code=200,
)
async def cancel_saga(
    backend: Served,
    request: AnyRequest,
    saga_id: FromPath[str],
    data: JSONBody[CancelRequest | None] = None,
) -> ActionResult:
    await _state(backend, saga_id)
    reason = (data or CancelRequest()).reason
    with refused():
        entry = await cancel_checked(
            backend.client,
            saga_id,
            reason,
            by=request.user.name,
            accept_timeout=backend.accept_timeout,
        )
    return await _acted(backend, saga_id, entry)


@post(
    "/{saga_id:str}/retry",
    summary="Retry a failed saga's compensation",
    guards=[requires("operator")],
    status_code=200,
)
async def retry_saga(backend: Served, request: AnyRequest, saga_id: FromPath[str]) -> ActionResult:
    await _state(backend, saga_id)
    with refused():
        entry = await retry_checked(
            backend.client, saga_id, by=request.user.name, accept_timeout=backend.accept_timeout
        )
    return await _acted(backend, saga_id, entry)


@post(
    "/{saga_id:str}/pause",
    summary="Pause a saga: it sends nothing until resumed",
    guards=[requires("operator")],
    status_code=200,
)
async def pause_saga(
    backend: Served,
    request: AnyRequest,
    saga_id: FromPath[str],
    data: JSONBody[PauseRequest | None] = None,
) -> ActionResult:
    await _state(backend, saga_id)
    with refused():
        entry = await pause_checked(
            backend.client,
            saga_id,
            by=request.user.name,
            hold_deadline=(data or PauseRequest()).hold_deadline,
            accept_timeout=backend.accept_timeout,
        )
    return await _acted(backend, saga_id, entry)


@post(
    "/{saga_id:str}/resume",
    summary="Resume a paused saga",
    guards=[requires("operator")],
    status_code=200,
)
async def resume_saga(backend: Served, request: AnyRequest, saga_id: FromPath[str]) -> ActionResult:
    await _state(backend, saga_id)
    with refused():
        entry = await resume_checked(
            backend.client, saga_id, by=request.user.name, accept_timeout=backend.accept_timeout
        )
    return await _acted(backend, saga_id, entry)


def sagas_router() -> Router:
    """``/sagas`` (under ``/api``); reads need a viewer, actions an operator."""
    return Router(
        "/sagas",
        route_handlers=[
            list_sagas,
            show_saga,
            saga_history,
            saga_graph,
            start_saga,
            signal_saga,
            cancel_saga,
            retry_saga,
            pause_saga,
            resume_saga,
        ],
        guards=[requires("viewer")],
        tags=["sagas"],
    )
