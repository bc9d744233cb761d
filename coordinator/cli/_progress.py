"""Progress of long operations, on stderr (stdout carries the report or the JSON).

Shown when stderr is a terminal, or when asked with ``--progress`` (then, off a
terminal, as plain counter lines a log keeps); ``--no-progress`` hides it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["Advance", "ProgressOpt", "progress", "progress_of", "wanted"]

ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        show_default=False,
        help="Show progress on stderr (default: when stderr is a terminal).",
    ),
]


class Advance(Protocol):
    def __call__(self, done: int = 1, /, **fields: object) -> None: ...


def wanted(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@contextmanager
def progress(label: str, total: int, flag: bool | None, *, detail: str = "") -> Iterator[Advance]:
    """Yields ``advance(n, **fields)``: ``n`` more done; ``fields`` fill ``detail``
    (a format string, e.g. ``"{diverged} diverged"``)."""
    if not wanted(flag):
        yield lambda done=1, /, **fields: None
        return
    if not sys.stderr.isatty():
        yield _Counter(label, total, detail)
        return
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns.append(TextColumn(detail.replace("{", "{task.fields[").replace("}", "]}")))
    bar = Progress(*columns, console=Console(stderr=True), transient=True)
    with bar:
        # rich's **fields are Any, but mypy matches a dict's values to its bool options.
        initial: dict[str, Any] = dict.fromkeys(_names(detail), 0)
        task = bar.add_task(label, total=total, **initial)

        def advance(done: int = 1, /, **fields: object) -> None:
            bar.update(task, advance=done)
            if fields:
                given: dict[str, Any] = dict(fields)
                bar.update(task, **given)

        yield advance


@contextmanager
def progress_of(label: str, flag: bool | None) -> Iterator[Callable[[int, int], None]]:
    """Yields ``report(done, total)`` for work whose total is known only once it starts
    (a callback of the client's): the progress opens at the first report."""
    with ExitStack() as stack:
        shown: list[int] = []
        advance: list[Advance] = []

        def report(done: int, total: int) -> None:
            if not advance:
                advance.append(stack.enter_context(progress(label, total, flag)))
                shown.append(0)
            if done > shown[0]:
                advance[0](done - shown[0])
                shown[0] = done

        yield report


class _Counter:
    """``label: done/total`` on its own line: readable in a log, unlike a bar."""

    def __init__(self, label: str, total: int, detail: str) -> None:
        self._label, self._total, self._detail = label, total, detail
        self._done = 0
        self._fields: dict[str, object] = dict.fromkeys(_names(detail), 0)
        self._write()

    def __call__(self, done: int = 1, /, **fields: object) -> None:
        self._done += done
        self._fields.update(fields)
        self._write()

    def _write(self) -> None:
        extra = f" ({self._detail.format(**self._fields)})" if self._detail else ""
        print(f"{self._label}: {self._done}/{self._total}{extra}", file=sys.stderr, flush=True)


def _names(detail: str) -> list[str]:
    from string import Formatter

    return [name for _, name, _, _ in Formatter().parse(detail) if name]
