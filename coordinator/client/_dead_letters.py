"""The dead letters of a deployment, for an operator: every queue of the namespace at once.

A namespace's consumed queues are the coordinators' events queue and one
commands queue per participant service (`contracts.routes`); each has its dead
letters. These functions read, move back and drop them through the
``DeadLetters`` port, so they run on the memory adapters as on RabbitMQ. The
CLI (``saga dead-letters``) and the REST API are faces of them.

Nothing is lost: a letter moved back (`redrive_dead_letters`) is taken out of
the dead letters only once the broker confirmed its copy in the queue, and a
message that is still bad is dead-lettered again, with its reason, by the
consumer that refuses it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from contracts import routes
from coordinator._errors import RequestRefusedError
from coordinator.ports import DeadLetter, DeadLetters

__all__ = [
    "dead_letter_json",
    "list_dead_letters",
    "namespace_queues",
    "purge_dead_letters",
    "redrive_dead_letters",
    "show_dead_letter",
]

SNAPSHOT = 10_000
"""How many dead letters of one queue are read to find a message or to redrive."""


def namespace_queues(services: Iterable[str]) -> list[str]:
    """The consumed queues of a namespace whose participant services are ``services``."""
    return [routes.EVENTS_QUEUE, *(routes.commands_queue(s) for s in sorted(set(services)))]


async def _chosen(dead_letters: DeadLetters, queues: Sequence[str], queue: str | None) -> list[str]:
    """``queues``, or the one queue asked for, once it is known to exist.

    Raises:
        RequestRefusedError: ``queue`` is neither one of ``queues`` nor declared
            on the broker.
    """
    if queue is None:
        return list(queues)
    if queue in queues or await dead_letters.exists(queue):
        return [queue]
    raise RequestRefusedError(
        f"no queue {queue!r} in this namespace; its queues are {', '.join(queues)}"
    )


async def list_dead_letters(
    dead_letters: DeadLetters, queues: Sequence[str], *, queue: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The dead letters of every queue in ``queues`` (or of ``queue``), at most
    ``limit`` per queue, oldest first within each. Reading takes nothing out."""
    found: list[DeadLetter] = []
    for name in await _chosen(dead_letters, queues, queue):
        found += await dead_letters.list(name, limit)
    return found


async def show_dead_letter(
    dead_letters: DeadLetters, queues: Sequence[str], message_id: str, *, queue: str | None = None
) -> list[DeadLetter]:
    """Every dead letter with ``message_id`` (one message parked by two queues is two).

    Raises:
        RequestRefusedError: No dead letter has that id.
    """
    found = [
        letter
        for name in await _chosen(dead_letters, queues, queue)
        for letter in await dead_letters.list(name, SNAPSHOT)
        if letter.message_id == message_id
    ]
    if not found:
        raise RequestRefusedError(f"no dead letter with message id {message_id!r}")
    return found


async def redrive_dead_letters(
    dead_letters: DeadLetters,
    queues: Sequence[str],
    *,
    queue: str | None = None,
    message_ids: Collection[str] | None = None,
    report: Callable[[int, int], None] | None = None,
) -> list[DeadLetter]:
    """Move dead letters back to their queue: those of ``message_ids``, or all.

    ``report(moved, total)`` is called once the total is known and after each
    queue, for a progress display.

    Each queue's dead letters are counted first, and at most that many are
    moved: a letter still bad that comes back to the dead letters while this
    runs is not moved again (it would go round for ever).

    Raises:
        RequestRefusedError: One of ``message_ids`` is no dead letter; then
            nothing is moved.
    """
    wanted = None if message_ids is None else set(message_ids)
    plan: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for name in await _chosen(dead_letters, queues, queue):
        ids = [
            letter.message_id
            for letter in await dead_letters.list(name, SNAPSHOT)
            if wanted is None or letter.message_id in wanted
        ]
        seen.update(ids)
        if ids:
            plan.append((name, ids))
    missing = sorted((wanted or set()) - seen)
    if missing:
        raise RequestRefusedError(
            f"no dead letter with message id {', '.join(map(repr, missing))}; nothing was moved"
        )
    moved: list[DeadLetter] = []
    total = sum(len(ids) for _, ids in plan)
    if report is not None:
        report(0, total)
    for name, ids in plan:
        chosen = None if wanted is None else set(ids)
        moved += await dead_letters.redrive(name, chosen, limit=len(ids))
        if report is not None:
            report(len(moved), total)
    return moved


async def purge_dead_letters(
    dead_letters: DeadLetters, queues: Sequence[str], *, queue: str | None = None
) -> dict[str, int]:
    """Drop the dead letters of every queue (or of ``queue``); how many, by queue."""
    return {
        name: await dead_letters.purge(name) for name in await _chosen(dead_letters, queues, queue)
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON values: its body as text, or base64 if it is not UTF-8."""
    try:
        body: dict[str, str] = {"body": letter.body.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"body_base64": base64.b64encode(letter.body).decode("ascii")}
    at = letter.dead_lettered_at
    return {
        "queue": letter.queue,
        "message_id": letter.message_id,
        "reason": letter.reason,
        "detail": letter.detail,
        "exchange": letter.exchange,
        "routing_key": letter.routing_key,
        "dead_lettered_at": at.isoformat() if at else None,
        "delivery_count": letter.delivery_count,
        "headers": dict(letter.headers),
        **body,
    }
