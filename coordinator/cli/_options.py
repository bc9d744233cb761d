"""Options and settings shared by the command groups."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from coordinator._errors import SagaError
from coordinator.core import SagaDefinition
from coordinator.service import Settings, load_definition

__all__ = [
    "AcceptTimeoutOpt",
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


def settings(namespace: str | None, wait_for_servers: float | None = None) -> Settings:
    """The settings from the environment (``SAGA_*``), with the command line's overrides."""
    overrides: dict[str, Any] = {}
    if namespace:
        overrides["namespace"] = namespace
    if wait_for_servers is not None:
        overrides["wait_for_servers"] = timedelta(seconds=wait_for_servers)
    return Settings(**overrides)


def definition_option(spec: str) -> SagaDefinition[Any]:
    """The definition a ``--saga MODULE:ATTRIBUTE`` option names; a usage error if none."""
    try:
        return load_definition(spec)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--saga'") from exc
