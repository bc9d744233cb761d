"""An operator's repair tools for one saga: ``saga retry``, ``saga pause``, ``saga resume``.

Each reports success only once a coordinator applied the request; a refusal is one
line with the core's reason and exit 1 (``coordinator.cli._errors``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from coordinator.cli._options import AcceptTimeoutOpt, NamespaceOpt, settings
from coordinator.client import SagaClient, pause_checked, resume_checked, retry_checked
from coordinator.ports import HistoryEntry
from coordinator.service import open_client

__all__ = ["commands"]

commands = typer.Typer()

ByOpt = Annotated[
    str,
    typer.Option(
        "--by", envvar="USER", show_default=False, help="Who asks, for the history ($USER)."
    ),
]


def _apply(
    namespace: str | None, job: Callable[[SagaClient], Awaitable[HistoryEntry]]
) -> HistoryEntry:
    async def run() -> HistoryEntry:
        async with open_client(settings(namespace)) as client:
            return await job(client)

    return asyncio.run(run())


@commands.command()
def retry(
    saga_id: str,
    by: ByOpt = "",
    accept_timeout: AcceptTimeoutOpt = 10.0,
    namespace: NamespaceOpt = None,
) -> None:
    """Retry a failed saga's compensation where it stopped (nothing is undone twice)."""
    entry = _apply(
        namespace,
        lambda c: retry_checked(c, saga_id, by=by, accept_timeout=accept_timeout),
    )
    typer.echo(f"retry taken by {saga_id}: {entry.note}")


@commands.command()
def pause(
    saga_id: str,
    hold_deadline: Annotated[
        bool,
        typer.Option(
            "--hold-deadline",
            help="Stop the saga's deadline too: on resume it moves on by the time paused.",
        ),
    ] = False,
    by: ByOpt = "",
    accept_timeout: AcceptTimeoutOpt = 10.0,
    namespace: NamespaceOpt = None,
) -> None:
    """Pause a saga: it sends nothing until resumed; what arrives meanwhile is kept."""
    _apply(
        namespace,
        lambda c: pause_checked(
            c, saga_id, by=by, hold_deadline=hold_deadline, accept_timeout=accept_timeout
        ),
    )
    held = " (deadline held)" if hold_deadline else ""
    typer.echo(f"{saga_id} paused{held}; `saga resume {saga_id}` lets it go on")


@commands.command()
def resume(
    saga_id: str,
    by: ByOpt = "",
    accept_timeout: AcceptTimeoutOpt = 10.0,
    namespace: NamespaceOpt = None,
) -> None:
    """Resume a paused saga: what it received while paused takes effect, in order."""
    entry = _apply(
        namespace,
        lambda c: resume_checked(c, saga_id, by=by, accept_timeout=accept_timeout),
    )
    typer.echo(f"{saga_id} resumed: {entry.note}")
