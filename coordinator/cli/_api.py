"""``saga token`` and ``saga api``, and the HTTP extras of ``saga run --http``: the REST
API and the dashboard."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer

from coordinator.api import BackendFactory, api_extras, serve_api
from coordinator.cli._options import HttpOpt, NamespaceOpt, definition_option, settings
from coordinator.core import SagaDefinition
from coordinator.dashboard import Backend as DashboardBackend
from coordinator.dashboard import dashboard_router
from coordinator.service import (
    HttpExtras,
    Role,
    Settings,
    Tokens,
    configure_logging,
    new_token,
    run_loop,
)

__all__ = ["commands", "http_extras"]

commands = typer.Typer()

API_HTTP = "127.0.0.1:9466"


def http_extras(found: Settings, definitions: Sequence[SagaDefinition[Any]]) -> HttpExtras | None:
    """What ``saga run`` and ``saga api`` serve besides the probes (the REST API and
    the dashboard, behind one session, one auth middleware and CSRF); None when
    HTTP is off.

    Raises:
        ExposedWithoutTokensError: a non-loopback address without ``SAGA_API_TOKENS``.
    """
    if found.http_address is None:
        return None

    def dashboard(provide: BackendFactory) -> Sequence[Any]:
        # The pages read through the connections the API holds: a page that polls
        # every 2 s must not connect to Redis (with TLS, a handshake) each time.
        @asynccontextmanager
        async def held() -> AsyncIterator[DashboardBackend]:
            api = await provide()  # 503 until the servers are connected
            yield DashboardBackend(api.client, api.operator, api.breakers, api.settings)

        return [dashboard_router(held, tokens=Tokens.from_settings(found), definitions=definitions)]

    return api_extras(found, definitions, more_routes=dashboard)


@commands.command()
def token(
    name: Annotated[str, typer.Option(help="Who uses it: written as `by` in histories.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    payloads: Annotated[
        bool,
        typer.Option(help="It may read sensitive saga data in clear (each read is audited)."),
    ] = False,
) -> None:
    """Make an API token: prints it once, and the entry to add to SAGA_API_TOKENS."""
    if role not in ("viewer", "operator", "admin"):
        raise typer.BadParameter("viewer, operator or admin", param_hint="'--role'")
    chosen: Role = role  # type: ignore[assignment]
    secret, entry = new_token(name, chosen)
    typer.echo(f"token (shown once): {secret}")
    fields: dict[str, object] = {"name": entry.name, "role": entry.role, "sha256": entry.sha256}
    if payloads:
        fields["payloads"] = True
    entry_json = json.dumps(fields)
    typer.echo(f"add to the SAGA_API_TOKENS list: {entry_json}")


@commands.command()
def api(
    saga: Annotated[
        list[str] | None,
        typer.Option("--saga", help="MODULE:ATTRIBUTE of a saga, for its graph; repeatable."),
    ] = None,
    namespace: NamespaceOpt = None,
    http: HttpOpt = None,
) -> None:
    """Serve the REST API on its own (default 127.0.0.1:9466), apart from the replicas."""
    definitions = [definition_option(spec) for spec in saga or []]
    found = settings(namespace, http=http, http_default=API_HTTP)
    if found.http_address is None:
        raise typer.BadParameter("the API needs an address, not off", param_hint="'--http'")
    extras = http_extras(found, definitions)
    assert extras is not None
    configure_logging(found.log_level, found.log_format)
    run_loop(serve_api(found, extras, definitions=definitions), found.event_loop)
