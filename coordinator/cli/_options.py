"""Options and settings shared by the command groups."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from coordinator._errors import SagaError
from coordinator.core import SagaDefinition
from coordinator.service import Settings, http_address, load_definition

__all__ = [
    "AcceptTimeoutOpt",
    "HttpOpt",
    "JsonFlag",
    "NamespaceOpt",
    "WaitForServersOpt",
    "definition_option",
    "settings",
]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", help="Overrides SAGA_NAMESPACE.", show_default=False)
]
AcceptTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--accept-timeout",
        min=0,
        help="Seconds to wait for a coordinator to take the input before reporting failure.",
    ),
]
WaitForServersOpt = Annotated[
    float | None,
    typer.Option(
        "--wait-for-servers",
        min=0,
        show_default=False,
        help="Seconds to wait for RabbitMQ and Redis at start (0: fail at once); "
        "overrides SAGA_WAIT_FOR_SERVERS (default: forever).",
    ),
]


def _http_option(value: str | None) -> str | None:
    if value is not None and value.strip().lower() != "off":
        try:
            http_address(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return value


HttpOpt = Annotated[
    str | None,
    typer.Option(
        "--http",
        callback=_http_option,
        show_default=False,
        metavar="HOST:PORT",
        help="Where to serve /metrics, /livez and /readyz (port 0: any free one; off: "
        "nowhere); overrides SAGA_HTTP.",
    ),
]


def settings(
    namespace: str | None,
    wait_for_servers: float | None = None,
    *,
    http: str | None = None,
    http_default: str | None = None,
) -> Settings:
    """The settings from the environment (``SAGA_*``), with the command line's overrides;
    ``http_default`` is the command's address when neither ``--http`` nor ``SAGA_HTTP``
    gives one."""
    overrides: dict[str, Any] = {}
    if namespace:
        overrides["namespace"] = namespace
    if wait_for_servers is not None:
        overrides["wait_for_servers"] = timedelta(seconds=wait_for_servers)
    if http is not None:
        overrides["http"] = http
    found = Settings(**overrides)
    if found.http is None and http_default is not None:
        found = found.model_copy(update={"http": http_default})
    return found


def definition_option(spec: str) -> SagaDefinition[Any]:
    """The definition a ``--saga MODULE:ATTRIBUTE`` option names; a usage error if none."""
    try:
        return load_definition(spec)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--saga'") from exc
