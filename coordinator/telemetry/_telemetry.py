"""The runtime's one handle on traces and metrics (both optional)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, Protocol, final

from coordinator.core import Decision, Input, SagaDefinition, SagaState, Start
from coordinator.ports import Delivery, OutboxEntry

__all__ = ["Instruments", "SpanMaker", "Telemetry"]

_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


class SpanMaker(Protocol):
    """The spans of a saga's life (``_tracing.SagaTracer``)."""

    def root(self, state: SagaState[Any], carrier: Mapping[str, str] | None) -> str: ...

    def transition(
        self, state: SagaState[Any], what: str, delivery: Delivery | None
    ) -> AbstractContextManager[None]: ...

    def decided(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
    ) -> AbstractContextManager[None]: ...

    def sending(self, entry: OutboxEntry) -> AbstractContextManager[Mapping[str, str] | None]: ...


class Instruments(Protocol):
    """The metrics of a saga's life (``_metrics.SagaMetrics``)."""

    def decided(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
    ) -> None: ...

    def dead_lettered(self, queue: str, reason: str) -> None: ...

    def timer_fired(self, lag: timedelta) -> None: ...

    def consumed(self, queue: str) -> None: ...

    def sent(self, entry: OutboxEntry) -> None: ...

    def breaker_changed(self, service: str, old: str | None, new: str) -> None: ...


@final
class Telemetry:
    """Traces and metrics of saga transitions; each part is off unless given.

    Every method is one attribute check when its part is off: a process that
    configured neither spends almost nothing here.
    """

    def __init__(self, *, tracer: SpanMaker | None = None, metrics: Instruments | None = None):
        self._tracer = tracer
        self._metrics = metrics

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    def root(self, state: SagaState[Any], carrier: Mapping[str, str] | None) -> str:
        """Open the saga's root span (exported once the start commits, with the
        processing of the start); its context, to store with the saga."""
        return "" if self._tracer is None else self._tracer.root(state, carrier)

    def transition(
        self, state: SagaState[Any], what: str, delivery: Delivery | None
    ) -> AbstractContextManager[None]:
        """The span of one input's processing (``what``: ``start``, ``reply``,
        ``signal``, ``timeout``...), open while it is decided, committed and its
        messages published; ``delivery`` is the message it came in, if any."""
        if self._tracer is None:
            return _NOTHING
        return self._tracer.transition(state, what, delivery)

    def decided(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
    ) -> AbstractContextManager[None]:
        """A committed decision: counted, and its span open while its messages
        are published (with spans for compensations, parks and the end)."""
        if self._metrics is not None:
            self._metrics.decided(definition, before, inp, decision)
        if self._tracer is None:
            return _NOTHING
        return self._tracer.decided(definition, before, inp, decision)

    def sending(self, entry: OutboxEntry) -> AbstractContextManager[Mapping[str, str] | None]:
        """Around one publish: gives the headers to send (None: the entry's own)."""
        if self._metrics is not None:
            self._metrics.sent(entry)
        if self._tracer is None:
            return _NOTHING
        return self._tracer.sending(entry)

    def dead_lettered(self, queue: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.dead_lettered(queue, reason)

    def timer_fired(self, lag: timedelta) -> None:
        """A due timer was fired ``lag`` after it was due."""
        if self._metrics is not None:
            self._metrics.timer_fired(lag)

    def consumed(self, queue: str) -> None:
        """A message was taken from ``queue`` (the name without the namespace)."""
        if self._metrics is not None:
            self._metrics.consumed(queue)

    def breaker_changed(self, service: str, old: str | None, new: str) -> None:
        """The breaker of ``service`` went from ``old`` to ``new`` (``closed``, ``open``,
        ``half-open``) as this replica sees it; ``old`` is None when it is first seen."""
        if self._metrics is not None:
            self._metrics.breaker_changed(service, old, new)
