"""The ``saga`` command line: the root, ``saga demo``, and the command groups
(``_definitions``, ``_operate``, ``_serve``) added to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, cast

import typer

from coordinator.cli import (
    _acl,
    _api,
    _breakers,
    _control,
    _dead_letters,
    _definitions,
    _init,
    _operate,
    _replay,
    _serve,
    _stuck,
)
from coordinator.cli._errors import OneLineErrors, debug
from coordinator.service import load_object

__all__ = ["app", "main"]

app = typer.Typer(
    cls=OneLineErrors,
    name="saga",
    help="Run, inspect and test sagas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if not value:
        return
    try:
        typer.echo(f"saga-coordinator {version('saga-coordinator')}")
    except PackageNotFoundError:  # run from a checkout that was never installed
        typer.echo("saga-coordinator (not installed)")
    raise typer.Exit()


@app.callback()
def _root(
    debug_: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="SAGA_DEBUG", help="Show the traceback of an error, not one line."
        ),
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the installed version and exit.",
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


app.add_typer(_definitions.commands)
app.add_typer(_init.commands)
app.add_typer(_operate.commands)
app.add_typer(_replay.commands)
app.add_typer(_serve.commands)
app.add_typer(_api.commands)
app.add_typer(_control.commands)
app.add_typer(_dead_letters.commands)
app.add_typer(_stuck.commands)
app.add_typer(_acl.commands)
app.add_typer(_breakers.commands)


def main() -> None:
    app()
