"""Our histograms (``_histograms``) report what the SDK's own would, to every reader."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from coordinator.telemetry import SECONDS_BUCKETS
from coordinator.telemetry._histograms import HistogramCells, hooked

# Values on bounds, between them, below the first and above the last.
VALUES = (0.0, 0.001, 0.0011, 0.5, 0.5, 3.0, 86400.0, 100000.0)


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:  # nothing to report
        return []
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_the_installed_sdk_is_hooked_so_records_bypass_it() -> None:
    # If an SDK upgrade moves the internals we hook, this fails instead of the
    # histograms silently falling back to the SDK's slower ones.
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("t")
    assert hooked(meter)


def test_same_points_as_the_sdk_histogram_and_in_the_same_scope() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t", "1.0")
    ours: HistogramCells[str] = HistogramCells(
        meter, "ours", unit="s", description="d", bounds=SECONDS_BUCKETS
    )
    sdk = meter.create_histogram(
        "sdk", unit="s", explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
    )
    cell = ours.cell("k", {"a": "1"})
    for value in VALUES:
        cell.record(value)
        sdk.record(value, {"a": "1"})
    ours.cell("unused", {"a": "2"})  # never recorded: no point, as with the SDK
    [mine], [theirs] = points(reader, "ours"), points(reader, "sdk")
    for field in ("attributes", "count", "sum", "bucket_counts", "explicit_bounds", "min", "max"):
        assert getattr(mine, field) == getattr(theirs, field), field
    data = reader.get_metrics_data()
    assert data is not None
    [scope] = data.resource_metrics[0].scope_metrics
    assert {m.name for m in scope.metrics} == {"ours", "sdk"}


def test_a_histogram_made_twice_on_a_meter_is_one() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    for value in (0.5, 1.5):
        made: HistogramCells[str] = HistogramCells(
            meter, "h", unit="s", description="", bounds=(1.0,)
        )
        made.cell("k", {}).record(value)
    [point] = points(reader, "h")
    assert (point.count, point.bucket_counts) == (2, (1, 1))


def test_a_delta_reader_gets_each_interval_and_a_cumulative_one_the_total() -> None:
    delta = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    total = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[delta, total]).get_meter("t")
    made: HistogramCells[str] = HistogramCells(
        meter, "h", unit="s", description="", bounds=(1.0, 2.0)
    )
    cell = made.cell("k", {})
    cell.record(0.5)
    cell.record(1.5)
    [first] = points(delta, "h")
    assert (first.count, first.sum, first.bucket_counts) == (2, 2.0, (1, 1, 0))
    cell.record(3.0)
    [second] = points(delta, "h")
    assert (second.count, second.sum, second.bucket_counts) == (1, 3.0, (0, 0, 1))
    assert second.start_time_unix_nano == first.time_unix_nano
    assert points(delta, "h") == []  # nothing new: no point
    [cumulative] = points(total, "h")
    assert (cumulative.count, cumulative.bucket_counts) == (3, (1, 1, 1))


def test_a_meter_without_the_sdk_internals_gets_the_sdk_histogram() -> None:
    class Other:  # any API meter that is not the SDK's
        def __init__(self) -> None:
            self.recorded: list[tuple[float, Any]] = []

        def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
            return self

        def record(self, value: float, attributes: Any) -> None:
            self.recorded.append((value, attributes))

    other = Other()
    meter: Any = other
    assert not hooked(meter)
    histogram: HistogramCells[str] = HistogramCells(
        meter, "h", unit="s", description="", bounds=(1.0,)
    )
    histogram.cell("k", {"a": "1"}).record(0.5)
    assert other.recorded == [(0.5, {"a": "1"})]
