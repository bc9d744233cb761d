"""What the worker records and sends: the recorded form of a reply, and the
checks that a handler's result can be sent at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec

from contracts import Reply, TaskCompleted

__all__ = [
    "INVALID_COMMAND",
    "KeyLocks",
    "Recorded",
    "Unanswerable",
    "record_of",
    "recorded_decoder",
    "result_of",
    "trace_headers",
    "worth_recording",
]

INVALID_COMMAND: Final = "InvalidCommand"
# Forwarded from the command to the reply so the trace continues.
_TRACE_HEADERS: Final = ("traceparent", "tracestate")


class Recorded(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a reply says, without its envelope: what the idempotency store keeps.

    A whole reply, as earlier versions recorded, decodes into it as well.
    """

    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str = ""
    retryable: bool = False


recorded_decoder = msgspec.json.Decoder(Recorded)
recorded_encoder = msgspec.json.Encoder()


def record_of(reply: Reply) -> bytes:
    if isinstance(reply, TaskCompleted):
        return recorded_encoder.encode(Recorded(result=reply.result))
    return recorded_encoder.encode(
        Recorded(
            error_type=reply.error_type,
            error_message=reply.error_message,
            retryable=reply.retryable,
        )
    )


class Unanswerable(Exception):
    """The handler ran but its result cannot be sent; the outcome stays unknown."""


class KeyLocks:
    """One asyncio lock per idempotency key in use, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def worth_recording(reply: Reply) -> bool:
    # A retryable failure is not recorded, so that the retry really executes.
    if isinstance(reply, TaskCompleted):
        return True
    return not reply.retryable and reply.error_type != INVALID_COMMAND


def result_of(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        built = msgspec.to_builtins(value)
    except (TypeError, ValueError) as exc:
        raise Unanswerable(f"the handler's result cannot be sent as JSON: {exc}") from exc
    if not isinstance(built, dict):
        raise Unanswerable(
            f"a handler must return a msgspec Struct, a dict or None, got {type(value).__name__}"
        )
    return built


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}
