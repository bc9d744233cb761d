"""Commands that run a long-lived process: ``saga run`` and ``saga participant``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coordinator._errors import SagaError
from coordinator.cli._api import http_extras
from coordinator.cli._options import (
    HttpOpt,
    NamespaceOpt,
    WaitForServersOpt,
    definition_option,
    settings,
)
from coordinator.service import configure_logging, load_object, run_loop, serve_coordinator

__all__ = ["commands"]

commands = typer.Typer()

# Next to each other and to OpenTelemetry's own default (9464): a coordinator and
# a participant on one host do not collide.
RUN_HTTP = "127.0.0.1:9464"
PARTICIPANT_HTTP = "127.0.0.1:9465"


@commands.command()
def run(
    saga: Annotated[
        list[str], typer.Option("--saga", help="MODULE:ATTRIBUTE of a saga; repeatable.")
    ],
    namespace: NamespaceOpt = None,
    wait_for_servers: WaitForServersOpt = None,
    http: HttpOpt = None,
) -> None:
    """Run a coordinator replica: consume events, advance sagas, fire timers.

    Serves /metrics, /livez, /readyz and the REST API (/api) on --http (default
    127.0.0.1:9464).
    """
    definitions = [definition_option(spec) for spec in saga]
    found = settings(namespace, wait_for_servers, http=http, http_default=RUN_HTTP)
    extras = http_extras(found, definitions)
    configure_logging(found.log_level, found.log_format)
    run_loop(serve_coordinator(definitions, found, extras=extras), found.event_loop)


@commands.command()
def participant(
    services: Annotated[
        str,
        typer.Argument(help="MODULE:ATTRIBUTE: a Service, a list, or a function returning them."),
    ],
    namespace: NamespaceOpt = None,
    wait_for_servers: WaitForServersOpt = None,
    http: HttpOpt = None,
) -> None:
    """Run participant services written with the participants SDK.

    Serves /metrics, /livez and /readyz on --http (default 127.0.0.1:9465).
    """
    # The SDK is the other side of the wire: imported only by the command that runs it.
    from participants import serve_participants

    found = _services(services)
    config = settings(namespace, wait_for_servers, http=http, http_default=PARTICIPANT_HTTP)
    configure_logging(config.log_level, config.log_format)
    run_loop(serve_participants(found, config), config.event_loop)


def _services(spec: str) -> list[Any]:
    from participants import Service

    try:
        found = load_object(spec)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'SERVICES'") from exc
    if callable(found) and not isinstance(found, Service):
        found = found()
    items = [found] if isinstance(found, Service) else found
    if not isinstance(items, list | tuple) or not all(isinstance(i, Service) for i in items):
        raise typer.BadParameter(
            f"{spec!r} is {type(found).__name__}, not a Service, a list of them "
            "or a function returning them",
            param_hint="'SERVICES'",
        )
    return list(items)
