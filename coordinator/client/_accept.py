"""Operator inputs that report success only once a coordinator took them.

A start, a signal or a cancel goes through RabbitMQ, so publishing it says
nothing about whether it will apply. These functions publish, then watch the
store for the answer: the saga, or the refusal the coordinator recorded for a
start (``Refusals``); for a signal or a cancel, the history entry carrying the
message id (``HistoryEntry.input_id``), applied or refused. No answer within
the timeout means no coordinator took it: the message stays queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import msgspec

from coordinator._errors import RequestRefusedError, UnroutableError
from coordinator.core import SagaState
from coordinator.ports import HistoryEntry, Refusal

__all__ = ["Request", "answer_to", "cancel_checked", "checked", "signal_checked", "start_checked"]

POLL = 0.1


class Client(Protocol):
    """What these checks need of ``SagaClient`` (a stub in the unit tests)."""

    @property
    def namespace(self) -> str: ...

    async def state(self, saga_id: str) -> SagaState[Any] | None: ...

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]: ...

    async def refusal(self, saga_id: str) -> Refusal | None: ...

    async def start(
        self,
        name: str,
        data: dict[str, Any],
        saga_id: str | None = None,
        *,
        sent_at: datetime,
        by: str = "",
    ) -> str: ...

    async def signal(
        self, saga_id: str, name: str, data: dict[str, Any], *, by: str = ""
    ) -> str: ...

    async def cancel(self, saga_id: str, reason: str, *, by: str = "") -> str: ...


def _no_coordinator(what: str, namespace: str, timeout: float) -> RequestRefusedError:
    return RequestRefusedError(
        f"no coordinator took the {what} within {timeout:g} s (is `saga run` running in "
        f"namespace {namespace!r}?); the {what} stays queued and runs when one is up"
    )


async def _sent(what: str, namespace: str, send: Awaitable[str]) -> str:
    try:
        return await send
    except UnroutableError as exc:
        raise RequestRefusedError(
            f"nothing receives the {what}: no coordinator ever ran in namespace "
            f"{namespace!r} (start `saga run` there, or check SAGA_NAMESPACE)"
        ) from exc


async def _started_with(client: Client, saga_id: str) -> Any:
    """The input the saga started with (its first history entry), else its data now."""
    for entry in await client.history(saga_id):
        first: dict[str, Any] = msgspec.json.decode(entry.input)
        if first.get("type") == "Start":
            return first.get("data")
    state = await client.state(saga_id)
    return state.data if state else None


def _same_input(started: Any, given: dict[str, Any], data_type: type | None) -> bool:
    if data_type is not None:
        try:
            return bool(msgspec.convert(started, data_type) == msgspec.convert(given, data_type))
        except msgspec.ValidationError:
            return False
    # Without the definition only the fields given can be compared: the stored
    # input has every default filled in.
    return isinstance(started, dict) and all(started.get(k) == v for k, v in given.items())


async def _existing(
    client: Client, saga_id: str, data: dict[str, Any], data_type: type | None
) -> str:
    if not _same_input(await _started_with(client, saga_id), data, data_type):
        raise RequestRefusedError(
            f"saga {saga_id} already exists; this input was ignored "
            "(it differs from the one it started with)"
        )
    return saga_id


def _refused_start(name: str, saga_id: str, refusal: Refusal) -> RequestRefusedError:
    if refusal.reason == "schema_mismatch":
        return RequestRefusedError(f"the input does not fit saga {name!r}: {refusal.detail}")
    return RequestRefusedError(f"the coordinator refused to start {saga_id}: {refusal.detail}")


async def start_checked(
    client: Client,
    name: str,
    data: dict[str, Any],
    saga_id: str | None,
    *,
    accept_timeout: float,
    data_type: type | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    by: str = "",
) -> str:
    """Start a saga and return its id once it exists (``by``: who asked, kept in
    its history).

    Raises:
        RequestRefusedError: the input does not fit ``data_type`` (checked before
            publishing), the coordinator refused the start (unknown saga, input
            that does not fit), the saga exists with another input, or no
            coordinator took the start within ``accept_timeout`` seconds.
    """
    if data_type is not None:
        try:
            msgspec.convert(data, data_type)
        except msgspec.ValidationError as exc:
            raise RequestRefusedError(f"the input does not fit saga {name!r}: {exc}") from exc
    if saga_id is not None and await client.state(saga_id) is not None:
        return await _existing(client, saga_id, data, data_type)
    sent_at = datetime.now(UTC)
    saga_id = await _sent(
        "start", client.namespace, client.start(name, data, saga_id, sent_at=sent_at, by=by)
    )
    deadline = time.monotonic() + accept_timeout
    while True:
        if await client.state(saga_id) is not None:
            return await _existing(client, saga_id, data, data_type)
        refusal = await client.refusal(saga_id)
        if refusal is not None and refusal.sent_at == sent_at:
            raise _refused_start(name, saga_id, refusal)
        if time.monotonic() > deadline:
            raise _no_coordinator("start", client.namespace, accept_timeout)
        await sleep(POLL)


async def answer_to(
    history: Callable[[], Awaitable[Sequence[HistoryEntry]]],
    input_id: str,
    *,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> HistoryEntry | None:
    """The history entry made by the input ``input_id``, or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in reversed(await history()):
            if entry.input_id == input_id:
                return entry
        if time.monotonic() > deadline:
            return None
        await sleep(POLL)


Request = Literal["signal", "cancel", "retry", "pause", "resume"]


async def checked(
    client: Client,
    saga_id: str,
    what: Request,
    send: Callable[[], Awaitable[str]],
    accept_timeout: float,
    sleep: Callable[[float], Awaitable[None]],
    *,
    refuse_ended: bool = True,
) -> HistoryEntry:
    """Send a request for one saga and return the history entry it made once applied.

    ``refuse_ended`` refuses a saga that has ended before sending anything; the
    requests an ended saga may take (a retry) leave the judgement to the core.
    """
    state = await client.state(saga_id)
    if state is None:
        raise RequestRefusedError(f"no saga with id {saga_id} in namespace {client.namespace!r}")
    if refuse_ended and state.terminal:
        raise RequestRefusedError(f"saga {saga_id} is {state.status}: it takes no {what} any more")
    input_id = await _sent(what, client.namespace, send())
    entry = await answer_to(
        lambda: client.history(saga_id), input_id, timeout=accept_timeout, sleep=sleep
    )
    if entry is None:
        raise _no_coordinator(what, client.namespace, accept_timeout)
    if entry.refused:
        raise RequestRefusedError(f"saga {saga_id} refused the {what}: {entry.refused}")
    return entry


async def signal_checked(
    client: Client,
    saga_id: str,
    name: str,
    data: dict[str, Any],
    *,
    by: str = "",
    accept_timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> HistoryEntry:
    """Send a signal and return the history entry it made once the saga applied it.

    Raises:
        RequestRefusedError: no such saga, a saga that has ended, a signal the saga
            refused (its history says why), or no answer within ``accept_timeout``.
    """
    return await checked(
        client,
        saga_id,
        "signal",
        lambda: client.signal(saga_id, name, data, by=by),
        accept_timeout,
        sleep,
    )


async def cancel_checked(
    client: Client,
    saga_id: str,
    reason: str,
    *,
    by: str = "",
    accept_timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> HistoryEntry:
    """Cancel a saga and return the entry once it took the cancel; raises as ``signal_checked``."""
    return await checked(
        client,
        saga_id,
        "cancel",
        lambda: client.cancel(saga_id, reason, by=by),
        accept_timeout,
        sleep,
    )
