"""``saga dead-letters``: list, show, move back and drop the dead letters of a namespace.

The queues are the coordinators' events queue and the commands queue of every
service the coordinators recorded at start, plus any ``--service`` given (for
a service no coordinator of this version ran).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from typer._click import exceptions as click  # typer carries its own click

from coordinator.cli._options import JsonFlag, NamespaceOpt, settings
from coordinator.cli._output import console, print_json
from coordinator.cli._progress import ProgressOpt, progress_of
from coordinator.client import (
    dead_letter_json,
    list_dead_letters,
    purge_dead_letters,
    redrive_dead_letters,
    show_dead_letter,
)
from coordinator.ports import DeadLetter, DeadLetters
from coordinator.service import open_operator

__all__ = ["commands"]

T = TypeVar("T")

commands = typer.Typer(
    name="dead-letters",
    help="The dead letters of every queue of the namespace: list, show, redrive, purge.",
    no_args_is_help=True,
)

QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", help="Only this queue, e.g. coordinator.events or payments.commands."),
]
ServiceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--service",
        help="A participant service whose commands queue to include; repeatable "
        "(those the coordinators run are included anyway).",
    ),
]


def _with_dead_letters(
    namespace: str | None,
    services: Sequence[str] | None,
    job: Callable[[DeadLetters, list[str]], Awaitable[T]],
) -> T:
    async def run() -> T:
        async with open_operator(settings(namespace), services=services or ()) as operator:
            return await job(await operator.dead_letters(), operator.queues)

    # Errors become one line in coordinator.cli._errors, for every command.
    return asyncio.run(run())


def _print_letters(letters: Sequence[DeadLetter], *, as_json_: bool) -> None:
    if as_json_:
        print_json([dead_letter_json(letter) for letter in letters])
        return
    table = Table("queue", "message id", "reason", "detail", "from", "when", box=None)
    for letter in letters:
        at = letter.dead_lettered_at
        table.add_row(
            letter.queue,
            letter.message_id,
            letter.reason,
            letter.detail,
            f"{letter.exchange} {letter.routing_key}".strip(),
            at.isoformat(timespec="seconds") if at else "",
        )
    console.print(table)


@commands.command("list")
def list_(
    queue: QueueOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many per queue.")] = 100,
    service: ServiceOpt = None,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """List dead letters with their reasons, oldest first in each queue."""
    letters = _with_dead_letters(
        namespace,
        service,
        lambda dead, queues: list_dead_letters(dead, queues, queue=queue, limit=limit),
    )
    _print_letters(letters, as_json_=as_json)


@commands.command()
def show(
    message_id: Annotated[str, typer.Argument(help="The dead letter's message id.")],
    queue: QueueOpt = None,
    service: ServiceOpt = None,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Show one dead letter: its reason, where it was published, headers and body."""
    letters = _with_dead_letters(
        namespace,
        service,
        lambda dead, queues: show_dead_letter(dead, queues, message_id, queue=queue),
    )
    if as_json:
        print_json([dead_letter_json(letter) for letter in letters])
        return
    for letter in letters:
        shown = dead_letter_json(letter)
        body = shown.pop("body", None) or shown.pop("body_base64", "")
        for key, value in shown.items():
            console.print(f"[bold]{key}[/bold]: {value}", highlight=False)
        typer.echo(body)


@commands.command()
def redrive(
    queue: QueueOpt = None,
    message_ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only this message id; repeatable.")
    ] = None,
    service: ServiceOpt = None,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
    show_progress: ProgressOpt = None,
) -> None:
    """Move dead letters back to their queue, to be consumed again (all, or --id)."""
    with progress_of("moving dead letters back", show_progress) as report:
        moved = _with_dead_letters(
            namespace,
            service,
            lambda dead, queues: redrive_dead_letters(
                dead, queues, queue=queue, message_ids=message_ids, report=report
            ),
        )
    if as_json:
        print_json([dead_letter_json(letter) for letter in moved])
        return
    for letter in moved:
        typer.echo(f"moved {letter.message_id} back to {letter.queue}")
    typer.echo(f"{len(moved)} dead letter(s) moved back")


@commands.command()
def purge(
    queue: QueueOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the dead letters are dropped for good.")
    ] = False,
    service: ServiceOpt = None,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Drop dead letters for good (of every queue, or of --queue); needs --yes."""
    if not yes:
        which = f"of {queue}" if queue else "of every queue of the namespace"
        raise click.UsageError(
            f"purge drops the dead letters {which} for good; add --yes to confirm"
        )
    dropped = _with_dead_letters(
        namespace, service, lambda dead, queues: purge_dead_letters(dead, queues, queue=queue)
    )
    if as_json:
        print_json(dropped)
        return
    for name, count in dropped.items():
        typer.echo(f"{name}: {count} dropped")
