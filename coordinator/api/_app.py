"""The API on the process's HTTP server: routes, auth, OpenAPI, and the start that
opens its clients once the servers are up.

The OpenAPI document is generated from the msgspec types and served at
``/api/openapi.json``. Every ready-made docs UI of Litestar (Swagger, ReDoc,
Scalar, RapiDoc, Stoplight) loads its script from a CDN, and the API must work
with no internet access: ``/api/docs`` is a plain page rendered here from the
document, every operation with its summary, no script.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any, final

from litestar import MediaType, Request, Router
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from coordinator.api._backend import Backend, open_backend
from coordinator.api._errors import exception_handlers
from coordinator.api._operations import operations_routers
from coordinator.api._sagas import sagas_router
from coordinator.core import SagaDefinition
from coordinator.service import (
    HttpExtras,
    Settings,
    Tokens,
    auth_middleware,
    check_exposure,
    session_config,
)

__all__ = ["BackendFactory", "api_extras"]

BackendFactory = Callable[[], Awaitable[Backend]]
"""Gives the backend (raises 503 ``ServiceUnavailableException`` until it is open)."""

_UNGUARDED = ["^/api", "^/metrics", "^/livez", "^/readyz"]


@final
class _DocsPage(OpenAPIRenderPlugin):
    """``/api/docs``: the operations of the document, as HTML with no script."""

    def __init__(self) -> None:
        super().__init__(path="/docs", media_type=MediaType.HTML)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        rows = []
        for path, item in sorted(openapi_schema.get("paths", {}).items()):
            for method, op in item.items():
                if isinstance(op, dict):
                    rows.append(
                        f"<tr><td><code>{html.escape(method.upper())}</code></td>"
                        f"<td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
                    )
        title = html.escape(openapi_schema.get("info", {}).get("title", "API"))
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<meta name='viewport' content='width=device-width'></head><body>"
            f"<h1>{title}</h1><p>The whole document: "
            f"<a href='{self.get_openapi_json_route(request)}'>openapi.json</a>. "
            "Send <code>Authorization: Bearer TOKEN</code>.</p>"
            f"<table>{''.join(rows)}</table></body></html>"
        )
        return page.encode()


def _holder() -> tuple[dict[str, Backend], BackendFactory]:
    """Where the backend goes once the servers are connected, and its provider.

    A plain function: Litestar deep-copies what its dependencies are bound to, so a
    bound method would read a copy that never gets the backend.
    """
    held: dict[str, Backend] = {}

    async def provide() -> Backend:
        if "backend" not in held:
            raise ServiceUnavailableException("starting: connecting to RabbitMQ and Redis")
        return held["backend"]

    return held, provide


def api_extras(
    settings: Settings,
    definitions: Iterable[SagaDefinition[Any]] = (),
    *,
    more_routes: Callable[[BackendFactory], Sequence[Any]] | None = None,
) -> HttpExtras:
    """The REST API for the HTTP server of ``settings.http``, behind the tokens of
    ``settings.api_tokens``; ``more_routes`` (the dashboard's) are made from the
    function that gives the backend once the servers are connected, and share the
    session, the auth middleware and CSRF.

    Raises:
        ExposedWithoutTokensError: the address is not loopback and no token is set.
    """
    tokens = Tokens.from_settings(settings)
    address = settings.http_address
    access = check_exposure(address[0], tokens) if address else ""
    held, provide = _holder()
    found = list(definitions)

    async def start(stack: AsyncExitStack) -> None:
        held["backend"] = await stack.enter_async_context(open_backend(settings, found))

    api = Router(
        "/api",
        route_handlers=[sagas_router(), *operations_routers()],
        dependencies={"backend": Provide(provide)},
        exception_handlers=exception_handlers,
        security=[{"bearer": []}],
    )
    sessions = session_config(settings)
    return HttpExtras(
        routes=[api, *(more_routes(provide) if more_routes else ())],
        middleware=[sessions.middleware, auth_middleware(tokens)],
        csrf_config=CSRFConfig(
            secret=settings.session_secret or sessions.secret.hex(),
            cookie_name="saga_csrf",
            exclude=_UNGUARDED,
        ),
        openapi_config=OpenAPIConfig(
            title="saga-coordinator",
            version="1",
            path="/api",
            render_plugins=[JsonRenderPlugin(), _DocsPage()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="API token")
                }
            ),
        ),
        start=start,
        access=access,
    )
