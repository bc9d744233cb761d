"""An operator's repair tools for one saga: retry a failed compensation, pause, resume.

Each publishes its request like a signal or a cancel, then waits for the history
entry carrying its message id (``_accept.checked``): success means a coordinator
applied it; a refusal carries the core's reason (a saga that is not ``failed``,
one paused twice, one that has ended). The CLI and the REST API call these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from coordinator.client._accept import Client, checked
from coordinator.ports import HistoryEntry

__all__ = ["pause_checked", "resume_checked", "retry_checked"]


class ControlClient(Client, Protocol):
    """What these tools need of ``SagaClient`` (a stub in the unit tests)."""

    async def retry(self, saga_id: str, *, by: str = "") -> str: ...

    async def pause(self, saga_id: str, *, by: str = "", hold_deadline: bool = False) -> str: ...

    async def resume(self, saga_id: str, *, by: str = "") -> str: ...


Sleep = Callable[[float], Awaitable[None]]


async def retry_checked(
    client: ControlClient,
    saga_id: str,
    *,
    by: str = "",
    accept_timeout: float,
    sleep: Sleep = asyncio.sleep,
) -> HistoryEntry:
    """Retry a ``failed`` saga's exhausted compensation; return once it was taken.

    The saga compensates on from where it stopped; a step already compensated is
    not compensated again.

    Raises:
        RequestRefusedError: no such saga, a saga with no failed compensation (the
            core's reason), or no coordinator answered within ``accept_timeout``.
    """
    return await checked(
        client,
        saga_id,
        "retry",
        lambda: client.retry(saga_id, by=by),
        accept_timeout,
        sleep,
        refuse_ended=False,  # a failed saga has ended: the core judges
    )


async def pause_checked(
    client: ControlClient,
    saga_id: str,
    *,
    by: str = "",
    hold_deadline: bool = False,
    accept_timeout: float,
    sleep: Sleep = asyncio.sleep,
) -> HistoryEntry:
    """Pause a saga; return once it was paused. Raises as ``retry_checked`` (a saga that
    has ended or is paused already is refused)."""
    return await checked(
        client,
        saga_id,
        "pause",
        lambda: client.pause(saga_id, by=by, hold_deadline=hold_deadline),
        accept_timeout,
        sleep,
        refuse_ended=False,  # the core's reason is the one to report
    )


async def resume_checked(
    client: ControlClient,
    saga_id: str,
    *,
    by: str = "",
    accept_timeout: float,
    sleep: Sleep = asyncio.sleep,
) -> HistoryEntry:
    """Resume a paused saga; return once it resumed. Raises as ``retry_checked`` (a saga
    that is not paused is refused)."""
    return await checked(
        client,
        saga_id,
        "resume",
        lambda: client.resume(saga_id, by=by),
        accept_timeout,
        sleep,
        refuse_ended=False,
    )
