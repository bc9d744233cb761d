"""The ``saga`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import typer

from contracts import asyncapi, json_schema
from coordinator._dsl import to_mermaid
from coordinator._errors import SagaError
from coordinator.cli._errors import OneLineErrors, debug
from coordinator.cli._live import register
from coordinator.service import load_definition, load_object

__all__ = ["app", "main"]

app = typer.Typer(
    cls=OneLineErrors,
    name="saga",
    help="Run, inspect and test sagas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug_: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="SAGA_DEBUG", help="Show the traceback of an error, not one line."
        ),
    ] = False,
) -> None:
    """Run, inspect and test sagas. Errors are one line (`error: ...`); exit codes:
    0 done, 1 refused or failed, 2 usage or settings, 3 a server cannot be reached."""
    debug.on = debug_
    if not debug_:
        # A connection failure is said once, in our words (the URL without its
        # password); aiormq would log it again with its own traceback.
        logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)


@app.command()
def demo() -> None:
    """Run the order example end to end in one process, in memory, and show each saga."""
    # Found by name, as `saga run --saga` finds a user's saga: the library does
    # not import its examples, which are a deployment of both sides.
    run_demo = load_object("coordinator.examples.orders.demo:run_demo")
    raise typer.Exit(asyncio.run(cast(Callable[[], Coroutine[Any, Any, int]], run_demo)()))


@app.command()
def graph(
    saga: Annotated[str, typer.Argument(help="The saga definition, as MODULE:ATTRIBUTE.")],
) -> None:
    """Print a saga definition as a Mermaid flowchart."""
    try:
        definition = load_definition(saga)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'SAGA'") from exc
    typer.echo(to_mermaid(definition), nl=False)


@app.command()
def contracts(
    json_schema_: Annotated[
        bool, typer.Option("--json-schema", help="JSON Schema of every wire message.")
    ] = False,
    asyncapi_: Annotated[bool, typer.Option("--asyncapi", help="AsyncAPI 3.0 document.")] = False,
) -> None:
    """Print the wire contracts, for participants written in any language."""
    document = asyncapi() if asyncapi_ and not json_schema_ else json_schema()
    typer.echo(json.dumps(document, indent=2, sort_keys=False))


register(app)


def main() -> None:
    app()
