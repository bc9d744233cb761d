"""The dashboard's forms: log in and out, act on a saga, override a breaker,
redrive a dead letter.

Every form carries the CSRF token (the app's ``CSRFConfig`` refuses a post
without it) and every action button asks for a confirmation (``hx-confirm``).
An action is done by the operator functions the CLI uses, with the principal's
name as ``by``; its outcome is a notice on the page it returns to.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from litestar import Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import PermissionDeniedException
from litestar.params import Body, FromPath
from litestar.response import Redirect

from coordinator._errors import RequestRefusedError
from coordinator.breakers import policies
from coordinator.client import (
    cancel_checked,
    override_breaker,
    pause_checked,
    redrive_dead_letters,
    resume_checked,
    retry_checked,
    signal_checked,
)
from coordinator.dashboard._backend import Backend, BackendFactory
from coordinator.dashboard._render import Req, may, notice, page, principal_of
from coordinator.service import Role, Tokens

__all__ = ["action_routes"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
SagaAction = Literal["signal", "cancel", "retry", "pause", "resume"]
BreakerAction = Literal["open", "close", "reset"]


def _allowed(request: Req, role: Role) -> str:
    """The principal's name, if its role ranks at least ``role``."""
    who = principal_of(request)
    if who is None or not may(request, role):
        raise PermissionDeniedException(f"only {role}s and above may do this")
    return who.name


def _object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise RequestRefusedError(f"the data is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RequestRefusedError("the data must be a JSON object")
    return value


async def _act(
    backend: Backend,
    action: SagaAction,
    saga_id: FromPath[str],
    by: str,
    form: dict[str, str],
    wait: float,
) -> str:
    client = backend.client
    match action:
        case "signal":
            name = form.get("name", "").strip()
            if not name:
                raise RequestRefusedError("a signal needs a name")
            data = _object(form.get("data", ""))
            await signal_checked(client, saga_id, name, data, accept_timeout=wait)
            return f"signal {name!r} taken"
        case "cancel":
            reason = form.get("reason", "").strip() or "cancelled by operator"
            await cancel_checked(client, saga_id, f"{reason} (by {by})", accept_timeout=wait)
            return "cancel taken"
        case "retry":
            entry = await retry_checked(client, saga_id, by=by, accept_timeout=wait)
            return f"retry taken: {entry.note}"
        case "pause":
            hold = form.get("hold_deadline") == "on"
            await pause_checked(client, saga_id, by=by, hold_deadline=hold, accept_timeout=wait)
            return "paused"
        case "resume":
            entry = await resume_checked(client, saga_id, by=by, accept_timeout=wait)
            return f"resumed: {entry.note}"


def action_routes(backends: BackendFactory, tokens: Tokens, accept_timeout: float) -> list[Any]:
    """The handlers that change something (operator and admin), and the login."""
    return [*_login_routes(tokens), *_change_routes(backends, accept_timeout)]


def _login_routes(tokens: Tokens) -> list[Any]:

    @get("/login")
    async def login_form(request: Req) -> Response[str]:
        return page(request, "login.html", tokens_configured=not tokens.empty)

    @post("/login")
    async def login(request: Req, data: Form) -> Response[Any]:
        if tokens.empty:  # loopback only: everyone here is admin already
            return Redirect("/ui/sagas")
        who = tokens.check(data.get("token", "").strip())
        if who is None:
            return page(request, "login.html", tokens_configured=True, failed=True, status_code=401)
        request.set_session(
            {"principal": {"name": who.name, "role": who.role, "payloads": who.payloads}}
        )
        return Redirect("/ui/sagas")

    @post("/logout")
    async def logout(request: Req) -> Redirect:
        request.clear_session()
        return Redirect("/ui/login")

    return [login_form, login, logout]


def _change_routes(backends: BackendFactory, accept_timeout: float) -> list[Any]:

    @post("/sagas/{saga_id:str}/{action:str}")
    async def saga_action(
        request: Req, saga_id: FromPath[str], action: FromPath[str], data: Form
    ) -> Redirect:
        by = _allowed(request, "operator")
        if action not in ("signal", "cancel", "retry", "pause", "resume"):
            raise PermissionDeniedException(f"no action {action!r}")
        try:
            async with backends() as backend:
                said = await _act(backend, action, saga_id, by, data, accept_timeout)  # type: ignore[arg-type]
            notice(request, said)
        except RequestRefusedError as exc:
            notice(request, str(exc), error=True)
        return Redirect(f"/ui/sagas/{saga_id}")

    @post("/breakers/{service:str}/{action:str}")
    async def breaker_action(
        request: Req, service: FromPath[str], action: FromPath[str], data: Form
    ) -> Redirect:
        by = _allowed(request, "admin")
        if action not in ("open", "close", "reset"):
            raise PermissionDeniedException(f"no breaker action {action!r}")
        try:
            async with backends() as backend:
                s = backend.settings
                by_service, default = policies(
                    [], defaults=s.breaker_defaults, overrides=s.breakers
                )
                status = await override_breaker(
                    backend.breakers,
                    backend.operator.store,
                    service,
                    action,  # type: ignore[arg-type]
                    reason=data.get("reason", ""),
                    by=by,
                    policy=by_service.get(service, default),
                )
            notice(request, f"{service}: {status.state}; {status.parked} saga(s) parked")
        except RequestRefusedError as exc:
            notice(request, str(exc), error=True)
        return Redirect("/ui/breakers")

    @post("/dead-letters/redrive")
    async def redrive(request: Req, data: Form) -> Redirect:
        _allowed(request, "operator")
        queue = data.get("queue") or None
        try:
            async with backends() as backend:
                moved = await redrive_dead_letters(
                    await backend.operator.dead_letters(),
                    backend.operator.queues,
                    queue=queue,
                    message_ids=[data["message_id"]] if data.get("message_id") else None,
                )
            notice(request, f"{len(moved)} dead letter(s) moved back")
        except RequestRefusedError as exc:
            notice(request, str(exc), error=True)
        return Redirect("/ui/dead-letters")

    return [saga_action, breaker_action, redrive]
