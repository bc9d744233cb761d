"""``saga replay`` and ``saga export``: the recorded history, checked against a
definition, or written out before retention drops it.

``saga replay`` reads through ``SagaClient`` and replays in this process: it
sends nothing, starts no span and counts no metric. The definitions given with
``--saga`` are matched to each saga by ``coordinator.client.replay_saga``: its
own version when given, else the newest given of its name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from coordinator._errors import RequestRefusedError
from coordinator._sealing import Keyring
from coordinator.cli._options import JsonFlag, NamespaceOpt, definition_option, settings
from coordinator.cli._output import console, print_json
from coordinator.cli._progress import ProgressOpt, progress
from coordinator.client import SagaClient, export_finished, replay_saga, saga_ids
from coordinator.core import SagaDefinition
from coordinator.replay import Replayed
from coordinator.service import open_client

__all__ = ["commands"]

commands = typer.Typer()

SagaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--saga",
        help="MODULE:ATTRIBUTE of a definition to replay against; repeatable. A saga "
        "replays against its own version if given, else the newest given of its name.",
        show_default=False,
    ),
]


@commands.command()
def replay(
    saga_id: Annotated[str | None, typer.Argument(help="The saga to replay.")] = None,
    saga: SagaOpt = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every saga of --name, with a progress bar.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="The definition's name, with --all.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only sagas in this status, with --all (e.g. running).")
    ] = None,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
    show_progress: ProgressOpt = None,
) -> None:
    """Re-run a saga's recorded inputs through a definition and compare what it
    decides with what was recorded; exits 1 if a saga does not replay as recorded."""
    definitions = _definitions(saga)
    if all_ == (saga_id is not None):
        raise typer.BadParameter("give a SAGA_ID, or --all with --name", param_hint="'SAGA_ID'")
    if not all_:
        if name is not None or status is not None:
            raise typer.BadParameter("only with --all", param_hint="'--name' / '--status'")
        assert saga_id is not None
        keys = settings(namespace).keyring()
        found = _run(namespace, lambda c: replay_saga(c, saga_id, definitions, keys=keys))
        _print_one(found, as_json_=as_json)
        raise typer.Exit(0 if found.compatible else 1)
    if name is None:
        raise typer.BadParameter("--all needs the definition's --name", param_hint="'--name'")
    if not any(d.name == name for d in definitions):
        given = ", ".join(sorted(d.key for d in definitions))
        raise typer.BadParameter(
            f"no definition named {name!r} given ({given})", param_hint="'--saga'"
        )
    keys = settings(namespace).keyring()
    results = _run(
        namespace, lambda c: _replay_all(c, definitions, name, status, keys, show_progress)
    )
    _print_many(results, name, as_json_=as_json)
    raise typer.Exit(0 if all(r.compatible for r in results) else 1)


@commands.command()
def export(
    since: Annotated[
        str,
        typer.Option(
            help="Sagas that ended at this time or later: ISO 8601, e.g. 2026-03-01 or "
            "2026-03-01T12:00+02:00 (UTC when no offset is given).",
        ),
    ],
    name: Annotated[
        list[str] | None, typer.Option(help="Only sagas of this definition; repeatable.")
    ] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Write the sagas that ended since --since, state and history, as JSON lines
    (one saga a line, oldest first), before retention (SAGA_RETENTION) drops them."""
    after = _since(since)

    async def job(client: SagaClient) -> int:
        written = 0
        async for saga in export_finished(client, after, names=name):
            typer.echo(msgspec.json.encode(saga).decode())
            written += 1
        return written

    written = _run(namespace, job)
    typer.echo(f"{written} sagas exported", err=True)


def _definitions(specs: Sequence[str] | None) -> list[SagaDefinition[Any]]:
    if not specs:
        raise typer.BadParameter(
            "name the definitions to replay against, as MODULE:ATTRIBUTE", param_hint="'--saga'"
        )
    return [definition_option(spec) for spec in specs]


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-03-01T12:00Z)",
            param_hint="'--since'",
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _run(namespace: str | None, job: Any) -> Any:
    async def run() -> Any:
        async with open_client(settings(namespace)) as client:
            return await job(client)

    # Errors become one line in coordinator.cli._errors, for every command.
    return asyncio.run(run())


async def _replay_all(
    client: SagaClient,
    definitions: Sequence[SagaDefinition[Any]],
    name: str,
    status: str | None,
    keys: Keyring | None,
    show: bool | None,
) -> list[Replayed]:
    ids = await saga_ids(client, name, status)
    results: list[Replayed] = []
    diverged = 0
    with progress(f"replaying {name}", len(ids), show, detail="{diverged} diverged") as advance:
        for saga_id in ids:
            try:
                result = await replay_saga(client, saga_id, definitions, keys=keys)
            except RequestRefusedError:  # ended and expired since it was listed
                advance(1)
                continue
            results.append(result)
            diverged += 0 if result.compatible else 1
            advance(1, diverged=diverged)
    return results


def _print_one(result: Replayed, *, as_json_: bool) -> None:
    if as_json_:
        print_json(_as_json(result))
        return
    on = f"{result.name} v{result.version}"
    head = f"{result.saga_id} ({result.name} v{result.recorded_version}), {result.inputs} inputs"
    d = result.divergence
    # Whole lines (soft wrap): a script greps them, a terminal wraps them itself.
    if d is None:
        console.print(f"{head}: [green]replays as recorded[/green] on {on}", soft_wrap=True)
        return
    console.print(f"{head}: [red]does not replay as recorded[/red] on {on}", soft_wrap=True)
    console.print(
        Text(f"first diverging input: #{d.index} at {_stamp(d.at)}: {d.input}"), soft_wrap=True
    )
    console.print(Text(f"what differed: {d.what}"), soft_wrap=True)


def _print_many(results: Sequence[Replayed], name: str, *, as_json_: bool) -> None:
    if as_json_:
        print_json([_as_json(r) for r in results])
        return
    bad = [r for r in results if not r.compatible]
    if bad:
        table = Table(
            "saga", "v", "on", "input", "at", "first diverging input", "what differed", box=None
        )
        for r in bad:
            assert r.divergence is not None
            d = r.divergence
            table.add_row(
                r.saga_id,
                str(r.recorded_version),
                str(r.version),
                f"#{d.index}",
                _stamp(d.at),
                d.input,
                Text(d.what),
            )
        console.print(table)
    versions = ", ".join(sorted({f"v{r.version}" for r in results})) or "-"
    console.print(
        f"{len(results)} sagas of {name} replayed on {versions}: "
        f"{len(results) - len(bad)} as recorded, "
        + (f"[red]{len(bad)} not[/red]" if bad else "0 not"),
        soft_wrap=True,
    )


def _as_json(result: Replayed) -> dict[str, Any]:
    found: dict[str, Any] = msgspec.to_builtins(result)
    found["compatible"] = result.compatible
    return found


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")
