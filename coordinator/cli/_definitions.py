"""Commands about definitions and wiring, no deployment needed: graph, contracts, topology."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from contracts import asyncapi, json_schema
from coordinator._errors import SagaError
from coordinator._graph import states_mermaid, to_mermaid
from coordinator.adapters.rabbitmq import definitions, user_definitions
from coordinator.cli._contracts import saga_contract
from coordinator.cli._options import NamespaceOpt, definition_option, settings
from coordinator.cli._output import print_topology
from coordinator.service import load_definition

__all__ = ["commands"]

commands = typer.Typer()


@commands.command()
def graph(
    saga: Annotated[
        str | None, typer.Argument(help="The saga definition, as MODULE:ATTRIBUTE.")
    ] = None,
    states: Annotated[
        bool,
        typer.Option("--states", help="The step statuses and the moves allowed between them."),
    ] = False,
) -> None:
    """Print a saga definition as a Mermaid flowchart (or, with --states, the step states)."""
    if states:
        typer.echo(states_mermaid(), nl=False)
        return
    if saga is None:
        raise typer.BadParameter(
            "name a saga as MODULE:ATTRIBUTE, or pass --states", param_hint="'SAGA'"
        )
    try:
        definition = load_definition(saga)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'SAGA'") from exc
    typer.echo(to_mermaid(definition), nl=False)


@commands.command()
def contracts(
    json_schema_: Annotated[
        bool, typer.Option("--json-schema", help="JSON Schema of every wire message.")
    ] = False,
    asyncapi_: Annotated[bool, typer.Option("--asyncapi", help="AsyncAPI 3.0 document.")] = False,
    saga: Annotated[
        list[str] | None,
        typer.Option(
            "--saga",
            help="With --asyncapi: a saga (MODULE:ATTRIBUTE) whose commands, replies and "
            "signals to document; repeatable.",
        ),
    ] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Print the wire contracts, for participants written in any language. The AsyncAPI
    document's channels are those of SAGA_NAMESPACE (or --namespace)."""
    if saga and not asyncapi_:
        raise typer.BadParameter("--saga documents sagas in --asyncapi only", param_hint="'--saga'")
    if asyncapi_ and not json_schema_:
        try:
            sagas = [saga_contract(load_definition(spec)) for spec in saga or []]
        except SagaError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--saga'") from exc
        document = asyncapi(settings(namespace).namespace, sagas)
    else:
        document = json_schema()
    typer.echo(json.dumps(document, indent=2, sort_keys=False))


@commands.command()
def topology(
    export: Annotated[
        bool,
        typer.Option(
            "--export", help="Print RabbitMQ definitions JSON (for rabbitmqctl import_definitions)."
        ),
    ] = False,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Participant service; repeatable.")
    ] = None,
    saga: Annotated[
        list[str] | None,
        typer.Option(
            "--saga",
            help="A saga (MODULE:ATTRIBUTE) whose participant services to include; repeatable.",
        ),
    ] = None,
    users: Annotated[
        bool,
        typer.Option(
            "--users",
            help="With --export: also the users (coordinator, operator, one per service) and "
            "their permissions, without passwords (set them with rabbitmqctl change_password).",
        ),
    ] = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Show the RabbitMQ topology (queues and what feeds them), or export it as JSON."""
    if users and not export:
        raise typer.BadParameter("--users adds to --export only", param_hint="'--users'")
    found = settings(namespace)
    services = set(service or [])
    for spec in saga or []:
        services |= {step.service for step in definition_option(spec).steps.values()}
    document = definitions(found.namespace, services, delivery_limit=found.delivery_limit)
    if users:
        try:
            document |= user_definitions(found.namespace, services)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--service'") from exc
    if export:
        typer.echo(json.dumps(document, indent=2))
    else:
        print_topology(document)
