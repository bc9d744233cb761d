"""How the ``saga`` command line answers a mistake: in one place, for every command.

Every error is one line on stderr, ``error: <what is wrong and how to fix it>``,
and an exit code a script can act on:

    0  done
    1  refused or failed: the operation was understood and did not happen
       (an unknown saga id, a start the coordinator refused, a saga that ended
       other than ``completed`` under ``--wait``, no coordinator answered in time)
    2  usage: a wrong option, argument, ``--saga`` or setting (``SAGA_*``), an
       HTTP port (``--http``) another process holds, or ``saga run`` without a
       definition version sagas are in flight on
    3  a server (RabbitMQ, Redis) cannot be reached: try again later
    130 interrupted

``--debug`` (or ``SAGA_DEBUG=1``) lets the traceback through instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pydantic
import typer
from typer._click import exceptions as click  # typer carries its own click
from typer.core import TyperGroup

from coordinator._errors import (
    SagaError,
    ServerUnreachableError,
    SettingsError,
    UnknownVersionError,
)
from coordinator.service import HttpAddressError
from coordinator.service._startup import reason

__all__ = ["EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_USAGE", "OneLineErrors", "debug"]

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class _Debug:
    on = False


debug = _Debug()


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _settings_error(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        name = f"SAGA_{field.upper()}"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}={error.get('input')!r}: {message}")
    return "; ".join(problems) + "; fix the value or unset it"


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for ``exc``."""
    match exc:
        case click.UsageError():
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            return EXIT_USAGE, exc.format_message() + hint
        case click.ClickException():
            return exc.exit_code, exc.format_message()
        case typer.Abort() | KeyboardInterrupt():
            return 130, "interrupted"
        case pydantic.ValidationError():
            return EXIT_USAGE, _settings_error(exc)
        case HttpAddressError():
            return EXIT_USAGE, str(exc)
        case ServerUnreachableError():
            return EXIT_UNREACHABLE, str(exc)
        case SettingsError() | UnknownVersionError():  # UnknownVersion: `saga run --saga`
            return EXIT_USAGE, str(exc)
        case SagaError():
            return EXIT_REFUSED, str(exc)
        case ConnectionError() | OSError() | TimeoutError():
            return EXIT_UNREACHABLE, f"lost the connection to a server ({reason(exc)})"
        case _:
            return EXIT_REFUSED, (
                f"unexpected {type(exc).__name__}: {exc}; run with --debug for the traceback"
            )


class OneLineErrors(TyperGroup):
    """The root command: runs the command line and turns any error into one line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        debug.on = False
        try:
            code = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except (Exception, KeyboardInterrupt) as exc:
            if debug.on:
                raise
            code, message = describe(exc)
            typer.echo(f"error: {_one_line(message)}", err=True)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)
