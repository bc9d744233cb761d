"""Which saga (and step) the code running now works for, for log lines.

A context variable, so that each task (one message, one timer) has its own; the
log configuration of the service processes adds it to every record, beside
the current span's trace and span ids.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import Final, final

__all__ = ["SagaScope", "current_saga"]

_CURRENT: Final[ContextVar[tuple[str, str] | None]] = ContextVar("saga_scope", default=None)


def current_saga() -> tuple[str, str] | None:
    """``(saga_id, step)`` of the work in progress (``step`` empty when none), if any."""
    return _CURRENT.get()


@final
class SagaScope:
    """``with SagaScope(saga_id, step):`` marks the work inside as the saga's."""

    __slots__ = ("_token", "_value")

    def __init__(self, saga_id: str, step: str = "") -> None:
        self._value = (saga_id, step)
        self._token: Token[tuple[str, str] | None] | None = None

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
