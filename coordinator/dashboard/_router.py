"""The dashboard as one Litestar ``Router`` under ``/ui``, its static files with it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Response, Router, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from coordinator.core import SagaDefinition
from coordinator.dashboard._actions import action_routes
from coordinator.dashboard._backend import BackendFactory
from coordinator.dashboard._pages import read_routes
from coordinator.dashboard._render import HERE, Req, principal_of
from coordinator.service import Tokens

__all__ = ["dashboard_router"]

# Pages anyone may open: the login, and the files it needs.
_OPEN = ("/ui/login", "/ui/static/")


async def _logged_in(request: Req) -> Response[Any] | None:
    # The auth middleware set ``user`` (or None); a page needs someone.
    if principal_of(request) is None and not request.url.path.startswith(_OPEN):
        if request.headers.get("hx-request"):
            # A poll after the session expired: htmx follows this header, not a 3xx.
            return Response("", status_code=401, headers={"HX-Redirect": "/ui/login"})
        return Redirect("/ui/login")
    return None


def dashboard_router(
    client_factory: BackendFactory,
    *,
    tokens: Tokens,
    definitions: Iterable[SagaDefinition[Any]] = (),
    accept_timeout: float = 10.0,
) -> Router:
    """The dashboard, to register on an app that has the auth middleware, the
    session and ``CSRFConfig`` (``coordinator.service``: ``auth_middleware``,
    ``session_config``).

    Args:
        client_factory: Gives a `Backend` for a request (``lambda:
            open_backend(settings)``, or one that yields connections held already).
        tokens: The tokens the login page takes (none: everyone is admin, loopback only).
        definitions: The definitions at hand (``saga run``): their graphs are drawn
            from the code; without them, from the shapes the coordinators recorded.
        accept_timeout: How long an action waits for a coordinator to take it.
    """
    by_key = {d.key: d for d in definitions}

    @get("/", include_in_schema=False)
    async def home() -> Redirect:
        return Redirect("/ui/sagas")

    static = create_static_files_router(
        path="/static", directories=[HERE / "static"], include_in_schema=False
    )
    return Router(
        path="/ui",
        route_handlers=[
            home,
            static,
            *read_routes(client_factory, by_key),
            *action_routes(client_factory, tokens, accept_timeout),
        ],
        before_request=_logged_in,
        include_in_schema=False,
    )
