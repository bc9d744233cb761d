"""Stopping a background loop so that it really stops."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop_task"]

_RECANCEL_SECONDS = 0.1


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, whatever it was doing.

    A single cancel is not enough on Python 3.11: ``asyncio.wait_for`` returns
    the inner result instead of raising when the cancel lands in the loop turn
    in which that result arrived (CPython gh-86296, fixed in 3.12), and redis-py
    writes every command through ``wait_for``. A ``while True`` loop around a
    Redis call then loses its cancel, goes on for ever, and the shutdown that
    awaits it hangs. So the cancel is repeated until the task is done; each
    repeat lands in the loop's next await, normally its sleep.

    What the task raised (its cancel included) is not re-raised: a loop's
    failures are its own to log. Cancelling the caller still cancels the caller.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=_RECANCEL_SECONDS)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio does not log it as never retrieved
