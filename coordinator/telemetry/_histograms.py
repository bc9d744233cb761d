"""Histograms the process keeps itself and hands to OpenTelemetry when it collects.

Why our own: the SDK's synchronous ``Histogram.record`` costs about 12 µs on a
busy 2-core host (it cleans and hashes the attribute set, takes a lock, offers
the value to the exemplar reservoir, then finds the bucket), and a saga records
one per step and one at its end: about 5% of a 3-step saga's throughput. The
two ways the SDK offers to bring values in at collection time do not fit: an
observable instrument reports counters and gauges, never a histogram, and the
specification's ``MetricProducer`` (a reader's source of outside data) is not
implemented in the Python SDK (1.45). So a histogram here is a list of bucket
counts per attribute set, made once, like the counters of ``_cells``; a record
is one ``bisect`` and a few additions. Each reader's collection of the meter's
provider gets them added as ``Histogram`` metrics of the meter's scope (same
name, unit, description, bounds and attributes as the SDK's would have, so
``/metrics`` and OTLP show the same thing), cumulative or delta as the reader
asks.

That hook reaches into the SDK's internals (``Meter._measurement_consumer``,
its reader storages), pinned by the exact SDK version in ``pyproject.toml`` and
by a test. When they are not there (another SDK, a no-op meter), a histogram is
the SDK's own, recorded through the API: slower, the same output.

Records run on the event loop, collections may run on an exporter's thread: a
collection copies each cell's counts in one step (under the GIL); a record
that runs between that copy and the read of the sum shows in the sum one
collection before it shows in the counts, never lost. A delta reader gets the
counts and sum of its interval, and the minimum and maximum since the start.
"""

from __future__ import annotations

import math
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, final

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Meter as SdkMeter
from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)

__all__ = ["HistogramCells", "Recorder", "hooked"]

K = TypeVar("K", bound=Hashable)


class Recorder(Protocol):
    """One histogram of one attribute set."""

    def record(self, value: float) -> None: ...


@final
class _Cell:
    __slots__ = ("attributes", "bounds", "counts", "max", "min", "sum")

    def __init__(self, attributes: Mapping[str, str], bounds: Sequence[float]) -> None:
        self.attributes = attributes
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, value: float) -> None:
        # bisect_left: a value on a bound counts in the bucket that bound closes,
        # as OpenTelemetry's explicit buckets (and Prometheus' ``le``) have it.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


@final
class _SdkCell:
    """The fallback: the SDK's histogram, recorded with the attribute set."""

    __slots__ = ("attributes", "histogram")

    def __init__(self, histogram: Any, attributes: Mapping[str, str]) -> None:
        self.histogram = histogram
        self.attributes = attributes

    def record(self, value: float) -> None:
        self.histogram.record(value, self.attributes)


@final
class HistogramCells(Generic[K]):
    """A histogram instrument made of cells, one per key (an attribute set)."""

    def __init__(
        self, meter: Meter, name: str, *, unit: str, description: str, bounds: Sequence[float]
    ) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(bounds)
        self._cells: dict[K, Recorder] = {}
        self._start = time.time_ns()
        producer = _producer(meter)
        self._sdk: Any = None
        if producer is None:
            self._sdk = meter.create_histogram(
                name, unit=unit, description=description, explicit_bucket_boundaries_advisory=bounds
            )
        else:
            # The same name made again on the meter (a second ``SagaMetrics``) shares
            # the first one's cells, as the SDK hands back the same instrument.
            first = producer.instruments.setdefault(name, self)
            self._cells, self._start = first._cells, first._start

    def cell(self, key: K, attributes: Mapping[str, str]) -> Recorder:
        """The cell of ``key``, made with ``attributes`` the first time."""
        found = self._cells.get(key)
        if found is None:
            found = self._cells[key] = (
                _Cell(attributes, self.bounds)
                if self._sdk is None
                else _SdkCell(self._sdk, attributes)
            )
        return found

    def _metric(
        self, now: int, since: int, previous: dict[int, tuple[list[int], float]] | None
    ) -> Metric | None:
        """This instrument's metric: cumulative, or (delta) the change since the
        reader's last collection at ``since``, whose counts ``previous`` holds
        (updated in place)."""
        points = []
        for cell in tuple(self._cells.values()):
            assert isinstance(cell, _Cell)
            counts = cell.counts[:]  # one step under the GIL
            total, low, high = cell.sum, cell.min, cell.max
            start = self._start
            if previous is not None:
                start = since
                before = previous.get(id(cell))
                previous[id(cell)] = (counts, total)
                if before is not None:
                    counts = [a - b for a, b in zip(counts, before[0], strict=True)]
                    total -= before[1]
            count = sum(counts)
            if not count:
                continue
            points.append(
                HistogramDataPoint(
                    attributes=cell.attributes,
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=count,
                    sum=total,
                    bucket_counts=tuple(counts),
                    explicit_bounds=self.bounds,
                    min=low,
                    max=high,
                )
            )
        if not points:
            return None
        temporality = (
            AggregationTemporality.CUMULATIVE if previous is None else AggregationTemporality.DELTA
        )
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=points, aggregation_temporality=temporality),
        )


@final
class _Producer:
    """The histograms of one meter, added to what each reader of its provider collects."""

    def __init__(self, meter: SdkMeter, consumer: Any) -> None:
        self.instruments: dict[str, HistogramCells[Any]] = {}
        self._scope = meter._instrumentation_scope
        for reader, storage in consumer._reader_storages.items():
            delta = reader._instrument_class_temporality[_Histogram] is AggregationTemporality.DELTA
            storage.collect = self._collector(storage, storage.collect, delta)

    def _collector(
        self, storage: Any, collect: Callable[[], MetricsData | None], delta: bool
    ) -> Callable[[], MetricsData | None]:
        # Delta: what each cell showed at the reader's last collection, by cell.
        previous: dict[int, tuple[list[int], float]] | None = {} if delta else None
        last = [time.time_ns()]

        def collected() -> MetricsData | None:
            data = collect()
            now = time.time_ns()
            ours = [
                m
                for h in tuple(self.instruments.values())
                if (m := h._metric(now, last[0], previous))
            ]
            last[0] = now
            if not ours:
                return data
            return self._added(data, ours, storage._sdk_config.resource)

        return collected

    def _added(self, data: MetricsData | None, ours: list[Metric], resource: Any) -> MetricsData:
        if data is None:
            data = MetricsData([ResourceMetrics(resource, [], resource.schema_url)])
        scopes = list(data.resource_metrics[0].scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope == self._scope:
                scopes[i] = ScopeMetrics(scope.scope, [*scope.metrics, *ours], scope.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(self._scope, ours, self._scope.schema_url or ""))
        first = data.resource_metrics[0]
        return MetricsData(
            [
                ResourceMetrics(first.resource, scopes, first.schema_url),
                *data.resource_metrics[1:],
            ]
        )


_PRODUCERS: weakref.WeakKeyDictionary[Meter, _Producer] = weakref.WeakKeyDictionary()


def _producer(meter: Meter) -> _Producer | None:
    """The producer of an SDK meter (made the first time), None for any other meter."""
    found = _PRODUCERS.get(meter)
    if found is None and isinstance(meter, SdkMeter):
        try:
            found = _PRODUCERS[meter] = _Producer(meter, meter._measurement_consumer)
        except (AttributeError, KeyError):  # another SDK's internals: the SDK's histograms
            return None
    return found


def hooked(meter: Meter) -> bool:
    """Whether histograms made on ``meter`` are ours (the SDK's internals were found)."""
    return _producer(meter) is not None
