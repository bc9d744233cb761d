"""``saga`` commands that talk to a running deployment (RabbitMQ + Redis)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from coordinator._errors import RefusedError, SagaError
from coordinator.client import SagaClient, cancel_checked, signal_checked, start_checked
from coordinator.core import SagaDefinition, SagaState
from coordinator.service import Settings, load_definition, load_object

__all__ = ["register"]

T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
console = Console()


def _settings(namespace: str | None) -> Settings:
    return Settings(namespace=namespace) if namespace else Settings()


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


def _load_definition(spec: str) -> SagaDefinition[Any]:
    try:
        return load_definition(spec)
    except SagaError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--saga'") from exc


def _load_services(spec: str) -> list[Any]:
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


def _serving(namespace: str | None, wait_for_servers: float | None) -> Settings:
    settings = _settings(namespace)
    if wait_for_servers is not None:
        settings = settings.model_copy(
            update={"wait_for_servers": timedelta(seconds=wait_for_servers)}
        )
    return settings


NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", help="Overrides SAGA_NAMESPACE.", show_default=False)
]


def _with_client(namespace: str | None, job: Callable[[SagaClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with SagaClient(_settings(namespace)) as client:
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


def _print_json(value: object) -> None:
    typer.echo(msgspec.json.encode(value).decode())


def _show(state: dict[str, Any]) -> None:
    console.print(
        f"[bold]{state['saga_id']}[/bold]  {state['name']} v{state['version']}  "
        f"[bold]{state['status']}[/bold]"
        + (f"  ({state['reason']})" if state.get("reason") else "")
    )
    table = Table("step", "status", "attempt", "error", box=None)
    for name, step in state["steps"].items():
        table.add_row(
            name,
            step.get("status", "pending"),
            str(step.get("attempt", 0)),
            step.get("error") or "",
        )
    console.print(table)
    console.print(f"data: {json.dumps(state['data'])}")


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=os.environ.get("SAGA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("aiormq", "aio_pika", "redis"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:  # noqa: C901 - one nested function per command
    @app.command()
    def run(
        saga: Annotated[
            list[str], typer.Option("--saga", help="MODULE:ATTRIBUTE of a saga; repeatable.")
        ],
        namespace: NamespaceOpt = None,
        wait_for_servers: WaitForServersOpt = None,
    ) -> None:
        """Run a coordinator replica: consume events, advance sagas, fire timers."""
        from coordinator.service import run_loop, serve_coordinator

        definitions = [_load_definition(spec) for spec in saga]
        settings = _serving(namespace, wait_for_servers)
        _log_to_stderr()
        run_loop(serve_coordinator(definitions, settings), settings.event_loop)

    @app.command()
    def participant(
        services: Annotated[
            str,
            typer.Argument(
                help="MODULE:ATTRIBUTE: a Service, a list, or a function returning them."
            ),
        ],
        namespace: NamespaceOpt = None,
        wait_for_servers: WaitForServersOpt = None,
    ) -> None:
        """Run participant services written with the participants SDK."""
        from coordinator.service import run_loop
        from participants import serve_participants

        found = _load_services(services)
        settings = _serving(namespace, wait_for_servers)
        _log_to_stderr()
        run_loop(serve_participants(found, settings), settings.event_loop)

    @app.command()
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
        data_type = _load_definition(saga).data_type if saga else None

        async def job(client: SagaClient) -> dict[str, Any]:
            sid = await start_checked(
                client, name, data, saga_id, accept_timeout=accept_timeout, data_type=data_type
            )
            if not wait:
                return {"saga_id": sid}
            return await client.wait(sid, timeout=timeout) or {"saga_id": sid, "status": "?"}

        result = _with_client(namespace, job)
        if as_json or not wait:
            _print_json(result)
        else:
            _show(result)
        if wait and result.get("status") != "completed":
            status = result.get("status")
            if status in SagaState.TERMINAL:
                raise RefusedError(
                    f"saga {result['saga_id']} ended {status}"
                    + (f": {result['reason']}" if result.get("reason") else "")
                )
            raise RefusedError(
                f"saga {result['saga_id']} is still {status} after {timeout:g} s (--timeout); "
                "it goes on: see `saga show`"
            )

    @app.command("list")
    def list_(
        status: Annotated[str | None, typer.Option(help="Only sagas in this status.")] = None,
        name: Annotated[str | None, typer.Option(help="Only sagas of this definition.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        as_json: JsonFlag = False,
        namespace: NamespaceOpt = None,
    ) -> None:
        """List sagas, newest change first."""
        found = _with_client(namespace, lambda c: c.find(name=name, status=status, limit=limit))
        if as_json:
            _print_json(
                [
                    {
                        k: s[k]
                        for k in (
                            "saga_id",
                            "name",
                            "version",
                            "status",
                            "reason",
                            "started_at",
                            "updated_at",
                        )
                    }
                    for s in found
                ]
            )
            return
        table = Table("saga", "name", "status", "updated", "reason", box=None)
        for s in found:
            table.add_row(
                s["saga_id"], s["name"], s["status"], s["updated_at"], s.get("reason") or ""
            )
        console.print(table)

    @app.command()
    def show(saga_id: str, as_json: JsonFlag = False, namespace: NamespaceOpt = None) -> None:
        """Show one saga: status, steps, data."""
        state = _with_client(namespace, lambda c: c.get(saga_id))
        if state is None:
            raise RefusedError(
                f"no saga with id {saga_id} in namespace {_settings(namespace).namespace!r}"
            )
        _print_json(state) if as_json else _show(state)

    @app.command()
    def history(saga_id: str, as_json: JsonFlag = False, namespace: NamespaceOpt = None) -> None:
        """Show a saga's history: every input and what was decided."""
        entries = _with_client(namespace, lambda c: c.history(saga_id))
        if not entries:
            raise RefusedError(
                f"no saga with id {saga_id} in namespace {_settings(namespace).namespace!r}"
            )
        if as_json:
            _print_json(entries)
            return
        table = Table("at", "rev", "input", "decided", box=None)
        for e in entries:
            kind = msgspec.json.decode(e.input).get("type", "?")
            table.add_row(
                e.at.isoformat(timespec="milliseconds"),
                str(e.revision),
                kind,
                e.note if e.changed else f"[dim]{e.note}[/dim]",
            )
        console.print(table)

    @app.command()
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

    @app.command()
    def cancel(
        saga_id: str,
        reason: Annotated[
            str, typer.Option(help="Why; kept with the saga.")
        ] = "cancelled by operator",
        accept_timeout: AcceptTimeoutOpt = 10.0,
        namespace: NamespaceOpt = None,
    ) -> None:
        """Cancel a saga: what it did is compensated."""
        _with_client(
            namespace, lambda c: cancel_checked(c, saga_id, reason, accept_timeout=accept_timeout)
        )
        typer.echo(f"cancel taken by {saga_id}")

    @app.command()
    def topology(
        export: Annotated[
            bool, typer.Option("--export", help="Print RabbitMQ definitions JSON.")
        ] = True,
        service: Annotated[
            list[str], typer.Option("--service", help="Participant service; repeatable.")
        ] = [],  # noqa: B006
        namespace: NamespaceOpt = None,
    ) -> None:
        """Print the RabbitMQ topology (exchanges, queues, bindings) as definitions JSON."""
        from coordinator.adapters.rabbitmq import definitions

        settings = _settings(namespace)
        doc = definitions(settings.namespace, service, delivery_limit=settings.delivery_limit)
        typer.echo(json.dumps(doc, indent=2))
