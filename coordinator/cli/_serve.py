"""Commands that run a long-lived process: ``saga run`` and ``saga participant``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coordinator._errors import SagaError
from coordinator.cli._options import (
    NamespaceOpt,
    WaitForServersOpt,
    definition_option,
    settings,
)
from coordinator.service import configure_logging, load_object, run_loop, serve_coordinator

__all__ = ["commands"]

commands = typer.Typer()


@commands.command()
def run(
    saga: Annotated[
        list[str], typer.Option("--saga", help="MODULE:ATTRIBUTE of a saga; repeatable.")
    ],
    namespace: NamespaceOpt = None,
    wait_for_servers: WaitForServersOpt = None,
) -> None:
    """Run a coordinator replica: consume events, advance sagas, fire timers."""
    definitions = [definition_option(spec) for spec in saga]
    found = settings(namespace, wait_for_servers)
    configure_logging(found.log_level, found.log_format)
    run_loop(serve_coordinator(definitions, found), found.event_loop)


@commands.command()
def participant(
    services: Annotated[
        str,
        typer.Argument(help="MODULE:ATTRIBUTE: a Service, a list, or a function returning them."),
    ],
    namespace: NamespaceOpt = None,
    wait_for_servers: WaitForServersOpt = None,
) -> None:
    """Run participant services written with the participants SDK."""
    # The SDK is the other side of the wire: imported only by the command that runs it.
    from participants import serve_participants

    found = _services(services)
    config = settings(namespace, wait_for_servers)
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
