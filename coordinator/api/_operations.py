"""``/api/breakers``, ``/api/dead-letters``, ``/api/stuck`` and ``/api/definitions``:
the operator's repair tools, the same functions as ``saga breaker``, ``saga
dead-letters`` and ``saga stuck``.

Overriding a breaker and purging dead letters need an admin; redriving needs an
operator; reading, a viewer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from coordinator.api._backend import Served
from coordinator.api._errors import refused
from coordinator.api._types import Definition, OverrideRequest, PurgeRequest, RedriveRequest
from coordinator.client import (
    BreakerStatus,
    Stuck,
    breaker_statuses,
    dead_letter_json,
    find_stuck,
    list_dead_letters,
    override_breaker,
    purge_dead_letters,
    redrive_dead_letters,
    show_dead_letter,
)
from coordinator.service import Principal, requires

__all__ = ["operations_routers"]

_QUIET = "Seconds without a transition"


@get("/breakers", summary="Each service's circuit breaker", tags=["breakers"])
async def list_breakers(backend: Served) -> list[BreakerStatus]:
    return await breaker_statuses(backend.breakers, backend.store)


@post(
    "/breakers/{service:str}/{action:str}",
    summary="Open (and hold), close or reset a breaker by hand",
    guards=[requires("admin")],
    status_code=200,
    tags=["breakers"],
)
async def override(
    backend: Served,
    request: Request[Principal, Any, Any],
    service: FromPath[str],
    action: FromPath[Literal["open", "close", "reset"]],
    data: JSONBody[OverrideRequest],
) -> BreakerStatus:
    with refused():
        return await override_breaker(
            backend.breakers,
            backend.store,
            service,
            action,
            reason=data.reason,
            by=request.user.name,
            policy=backend.policy(service),
        )


@get("/dead-letters", summary="Dead letters with their reasons, by queue", tags=["dead letters"])
async def dead_letters(
    backend: Served,
    queue: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    with refused():
        found = await list_dead_letters(
            await backend.dead_letters(), await backend.queues(), queue=queue, limit=limit
        )
    return [dead_letter_json(letter) for letter in found]


@get(
    "/dead-letters/{message_id:str}",
    summary="The dead letters with a message id (one per queue that holds it)",
    tags=["dead letters"],
)
async def dead_letter(
    backend: Served, message_id: FromPath[str], queue: FromQuery[str | None] = None
) -> list[dict[str, Any]]:
    with refused():
        found = await show_dead_letter(
            await backend.dead_letters(), await backend.queues(), message_id, queue=queue
        )
    return [dead_letter_json(letter) for letter in found]


@post(
    "/dead-letters/redrive",
    summary="Send dead letters back to where they were going",
    guards=[requires("operator")],
    status_code=200,
    tags=["dead letters"],
)
async def redrive(backend: Served, data: JSONBody[RedriveRequest]) -> list[dict[str, Any]]:
    with refused():
        moved = await redrive_dead_letters(
            await backend.dead_letters(),
            await backend.queues(),
            queue=data.queue,
            message_ids=data.message_ids,
        )
    return [dead_letter_json(letter) for letter in moved]


@post(
    "/dead-letters/purge",
    summary="Drop dead letters; how many, by queue",
    guards=[requires("admin")],
    status_code=200,
    tags=["dead letters"],
)
async def purge(backend: Served, data: JSONBody[PurgeRequest]) -> dict[str, int]:
    with refused():
        return await purge_dead_letters(
            await backend.dead_letters(), await backend.queues(), queue=data.queue
        )


@get("/stuck", summary="Sagas with no transition for a while, and what each waits for")
async def stuck(
    backend: Served,
    older_than: Annotated[
        float, QueryParameter(ge=0, description="Seconds without a transition")
    ] = 300.0,
    name: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[Stuck]:
    names = {name} if name else (await backend.names() or None)
    return await find_stuck(
        backend.store,
        timedelta(seconds=older_than),
        shapes=await backend.shapes(),
        names=names,
        limit=limit,
    )


@get("/definitions", summary="The definition versions the coordinators run")
async def definitions(backend: Served) -> list[Definition]:
    found = []
    for key, shape in sorted((await backend.shapes()).items()):
        name, _, version = key.rpartition("@")
        found.append(Definition(name=name, version=int(version), shape=shape))
    return found


def operations_routers() -> list[Router]:
    """The routers of the repair tools (under ``/api``); reading needs a viewer."""
    return [
        Router(
            "/",
            route_handlers=[
                list_breakers,
                override,
                dead_letters,
                dead_letter,
                redrive,
                purge,
                stuck,
                definitions,
            ],
            guards=[requires("viewer")],
        )
    ]
