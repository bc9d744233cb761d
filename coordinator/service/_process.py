"""The process around a service: its event loop and its signals.

Shutdown on SIGTERM or SIGINT is graceful: ``until_signalled`` returns, and the
service stops consuming, lets the handlers in flight finish, then closes its
connections.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["loop_name", "run_loop", "until_signalled"]

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], kind: Literal["auto", "uvloop", "asyncio"]) -> T:
    """Run ``main`` to completion on uvloop (``auto``: when it is installed) or asyncio's loop.

    uvloop does the socket I/O and the scheduling in C; for these processes,
    which mostly move small messages, it is most of their CPU.
    """
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


async def until_signalled(stop: asyncio.Event | None = None) -> None:
    """Wait for SIGTERM or SIGINT (or ``stop`` being set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
