"""Counts the process keeps itself and OpenTelemetry reads when it collects.

A synchronous ``Counter.add`` of the SDK cleans and hashes its attributes on
every call (about 10 µs on a busy 2-core host); a transition makes several
counts. So counters here are plain cells, one per attribute set, made once and
incremented in place (``cell.value += 1``), and reported through an
``ObservableCounter`` whose callback reads them: the cost moves from every
transition to every collection, which is per attribute set, not per event.

Callbacks may run on an exporter's thread (OTLP's periodic reader) while the
event loop counts: they read a ``tuple`` snapshot of the cells (taken in one
step under the GIL) and only read each cell's integer.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar, final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = ["Cell", "CounterCells", "GaugeValues"]

K = TypeVar("K", bound=Hashable)


@final
class Cell:
    """One counter of one attribute set; add to ``value``."""

    __slots__ = ("attributes", "value")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = attributes
        self.value = 0


@final
class CounterCells(Generic[K]):
    """A monotonic counter instrument made of cells, one per key (an attribute set)."""

    def __init__(self, meter: Meter, name: str, *, unit: str, description: str) -> None:
        self._cells: dict[K, Cell] = {}
        meter.create_observable_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def cell(self, key: K, attributes: Mapping[str, str]) -> Cell:
        """The cell of ``key``, made with ``attributes`` the first time."""
        found = self._cells.get(key)
        if found is None:
            found = self._cells[key] = Cell(attributes)
        return found

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(c.value, c.attributes) for c in tuple(self._cells.values())]


@final
class GaugeValues:
    """A gauge instrument reporting the values last set (nothing before the first)."""

    def __init__(self, meter: Meter, name: str, *, unit: str, description: str) -> None:
        self._observations: tuple[Observation, ...] = ()
        meter.create_observable_gauge(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def set(self, values: Iterable[tuple[int, Mapping[str, str]]]) -> None:
        """Replace every value at once; a collection sees the old set or the new one."""
        self._observations = tuple(Observation(value, attrs) for value, attrs in values)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._observations
