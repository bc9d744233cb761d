"""``saga stuck``: running or compensating sagas with no transition for a while,
and what each one waits for."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import pydantic
import typer
from rich.table import Table

from coordinator.cli._options import JsonFlag, NamespaceOpt, settings
from coordinator.cli._output import console, print_json
from coordinator.client import Stuck, Wait, find_stuck
from coordinator.service import open_operator

__all__ = ["commands", "parse_duration"]

commands = typer.Typer()

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_SHORT = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_ISO = pydantic.TypeAdapter(timedelta)


def parse_duration(text: str) -> timedelta:
    """``10m``, ``1h30m``, ``90s``, ``2d``, plain seconds (``600``) or ISO 8601 (``PT10M``).

    Raises:
        typer.BadParameter: None of these, or a negative duration.
    """
    value = text.strip().lower()
    if _SHORT.fullmatch(value):
        found = timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value)))
    else:
        try:
            found = timedelta(seconds=float(value))
        except ValueError:
            try:
                found = _ISO.validate_python(text.strip())
            except pydantic.ValidationError:
                raise typer.BadParameter(
                    f"{text!r} is not a duration; write e.g. 10m, 1h30m, 90s or PT10M",
                    param_hint="'--older-than'",
                ) from None
    if found < timedelta(0):
        raise typer.BadParameter(f"{text!r} is negative", param_hint="'--older-than'")
    return found


def _stamp(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "?"


def describe_wait(wait: Wait) -> str:
    """One line for people: what the saga waits for, since when, until when."""
    match wait.what:
        case "reply":
            text = f"reply to {wait.step} ({wait.kind} attempt {wait.attempt}"
            text += f", {wait.service}.{wait.command}" if wait.service else ""
            text += f") since {_stamp(wait.since)}"
            return text + (f", times out {_stamp(wait.due)}" if wait.due else "")
        case "signal":
            signal = repr(wait.signal) if wait.signal else "?"  # no shape recorded
            text = f"signal {signal} for {wait.step} since {_stamp(wait.since)}"
            return text + (f", times out {_stamp(wait.due)}" if wait.due else "")
        case "resume":
            return (
                f"an operator to resume it (paused by {wait.by or '?'} since {_stamp(wait.since)})"
            )
        case "service":
            service = wait.service or "its service"
            parked = f"{wait.step} parked since {_stamp(wait.since)}"
            return f"{service} to recover (breaker open), {parked}"
        case _:
            if wait.timer == "deadline":
                return f"the saga's deadline {_stamp(wait.due)}"
            return f"timer {wait.timer} due {_stamp(wait.due)}"


def print_stuck(found: Sequence[Stuck], *, as_json_: bool) -> None:
    if as_json_:
        print_json(found)
        return
    table = Table("saga", "name", "status", "quiet since", "waits for", box=None)
    for stuck in found:
        waits = "; ".join(describe_wait(w) for w in stuck.waits) or "nothing known"
        table.add_row(stuck.saga_id, stuck.name, stuck.status, _stamp(stuck.last_transition), waits)
    console.print(table)


@commands.command()
def stuck(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Quiet for at least this long: 10m, 1h30m, 90s, PT10M."),
    ] = "10m",
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    as_json: JsonFlag = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Sagas running or compensating with no transition for --older-than, and their waits.

    Each wait is a reply (step, kind, attempt, since when, its timeout), a
    signal (which), a parked service (which) or a timer (due when). Which signal
    or service comes from the definitions the coordinators recorded; ``?`` where
    the version running was recorded by a coordinator from before they were.
    """
    threshold = parse_duration(older_than)

    async def run() -> list[Stuck]:
        async with open_operator(settings(namespace)) as operator:
            names = operator.names or None  # none recorded: look for every name's index
            return await find_stuck(
                operator.store, threshold, shapes=operator.shapes, names=names, limit=limit
            )

    print_stuck(asyncio.run(run()), as_json_=as_json)
