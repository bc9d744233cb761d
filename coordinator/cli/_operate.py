"""Commands that operate a running deployment through ``SagaClient``:
start, list, show, history, signal, cancel."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from coordinator._errors import RequestRefusedError, SettingsError
from coordinator.cli._options import (
    AcceptTimeoutOpt,
    JsonFlag,
    NamespaceOpt,
    definition_option,
    settings,
)
from coordinator.cli._output import print_history, print_json, print_saga, print_sagas
from coordinator.client import SagaClient, cancel_checked, signal_checked, start_checked
from coordinator.core import SagaState
from coordinator.service import Payloads, open_client

__all__ = ["commands"]

T = TypeVar("T")

commands = typer.Typer()


def _with_client(namespace: str | None, job: Callable[[SagaClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_client(settings(namespace)) as client:
            return await job(client)

    # Errors become one line in coordinator.cli._errors, for every command.
    return asyncio.run(run())


def _json_arg(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


def _no_saga(saga_id: str, namespace: str | None) -> RequestRefusedError:
    return RequestRefusedError(
        f"no saga with id {saga_id} in namespace {settings(namespace).namespace!r}"
    )


@commands.command()
def start(
    name: Annotated[str, typer.Argument(help="The saga definition's name.")],
    input_: Annotated[
        str, typer.Option("--data", "--input", help="The saga's input, a JSON object.")
    ] = "{}",
    saga_id: Annotated[
        str | None, typer.Option("--id", help="Business key; random if absent.")
    ] = None,
    saga: Annotated[
        str | None,
        typer.Option(
            "--saga",
            help="MODULE:ATTRIBUTE of the definition: the input is checked before it is sent.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the saga ends.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 60.0,
    accept_timeout: AcceptTimeoutOpt = 10.0,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Start a saga (idempotent by --id); reports success once a coordinator took it."""
    data = _json_arg(input_, "--data")
    data_type = definition_option(saga).data_type if saga else None

    async def job(client: SagaClient) -> tuple[str, SagaState[Any] | None]:
        sid = await start_checked(
            client, name, data, saga_id, accept_timeout=accept_timeout, data_type=data_type
        )
        return sid, await client.wait(sid, timeout=timeout) if wait else None

    started, state = _with_client(namespace, job)
    if not wait:
        print_json({"saga_id": started})
    elif state is None:
        print_json({"saga_id": started, "status": "?"})
    else:
        print_saga(state, as_json_=as_json)
    if wait:
        _check_ended(started, state, timeout)


def _check_ended(saga_id: str, state: SagaState[Any] | None, timeout: float) -> None:
    """``start --wait`` succeeds only for a saga that completed."""
    if state is not None and state.status == "completed":
        return
    if state is not None and state.terminal:
        raise RequestRefusedError(
            f"saga {saga_id} ended {state.status}" + (f": {state.reason}" if state.reason else "")
        )
    status = state.status if state is not None else "?"
    raise RequestRefusedError(
        f"saga {saga_id} is still {status} after {timeout:g} s (--timeout); "
        "it goes on: see `saga show`"
    )


@commands.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only sagas in this status.")] = None,
    name: Annotated[str | None, typer.Option(help="Only sagas of this definition.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """List sagas, newest change first."""
    found = _with_client(namespace, lambda c: c.find(name=name, status=status, limit=limit))
    print_sagas(found, as_json_=as_json)


RevealFlag = Annotated[
    bool,
    typer.Option(
        "--reveal",
        help="Show sensitive data in clear, opened with the keys of SAGA_DATA_KEYS here "
        "(logged to coordinator.audit); without it, it shows as •••.",
    ),
]


def _payloads(namespace: str | None, reveal: bool) -> Payloads:
    payloads = Payloads(settings(namespace).keyring())
    if reveal and not payloads.can_open:
        raise SettingsError("--reveal needs the keys: set SAGA_DATA_KEYS or SAGA_DATA_KEYS_FILE")
    return payloads


@commands.command()
def show(
    saga_id: str,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
    reveal: RevealFlag = False,
) -> None:
    """Show one saga: status, steps, data."""
    payloads = _payloads(namespace, reveal)
    state = _with_client(namespace, lambda c: c.state(saga_id))
    if state is None:
        raise _no_saga(saga_id, namespace)
    print_saga(payloads.state(state, who=_operator(), reveal=reveal), as_json_=as_json)


@commands.command()
def history(
    saga_id: str,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
    reveal: RevealFlag = False,
) -> None:
    """Show a saga's history: every input and what was decided."""
    payloads = _payloads(namespace, reveal)
    entries = _with_client(namespace, lambda c: c.history(saga_id))
    if not entries:
        raise _no_saga(saga_id, namespace)
    print_history(
        payloads.history(saga_id, entries, who=_operator(), reveal=reveal), as_json_=as_json
    )


def _operator() -> str:
    # Who ran the command, for the audit line: the OS user (the CLI has no token).
    return f"cli:{getpass.getuser()}"


@commands.command()
def signal(
    saga_id: str,
    name: str,
    data: Annotated[str, typer.Option("--data", help="Signal data, a JSON object.")] = "{}",
    accept_timeout: AcceptTimeoutOpt = 10.0,
    namespace: NamespaceOpt = None,
) -> None:
    """Send a signal (e.g. an approval) to a saga."""
    payload = _json_arg(data, "--data")
    _with_client(
        namespace,
        lambda c: signal_checked(c, saga_id, name, payload, accept_timeout=accept_timeout),
    )
    typer.echo(f"signal {name!r} taken by {saga_id}")


@commands.command()
def cancel(
    saga_id: str,
    reason: Annotated[str, typer.Option(help="Why; kept with the saga.")] = "cancelled by operator",
    accept_timeout: AcceptTimeoutOpt = 10.0,
    namespace: NamespaceOpt = None,
) -> None:
    """Cancel a saga: what it did is compensated."""
    _with_client(
        namespace, lambda c: cancel_checked(c, saga_id, reason, accept_timeout=accept_timeout)
    )
    typer.echo(f"cancel taken by {saga_id}")
