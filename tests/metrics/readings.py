"""Reading metrics in tests: from the SDK's in-memory reader, or from Prometheus text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families


class Readings:
    """One collection of an in-memory reader: points by metric name."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.points: dict[str, list[Any]] = {}
        data = reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    self.points.setdefault(metric.name, []).extend(metric.data.data_points)

    def value(self, name: str, **attributes: str) -> float:
        """The sum of the values (of counters, gauges) whose attributes include these."""
        return sum(p.value for p in self.points.get(name, []) if _matches(p.attributes, attributes))

    def histogram(self, name: str, **attributes: str) -> tuple[int, float]:
        """(count, sum) over the histogram points whose attributes include these."""
        found = [p for p in self.points.get(name, []) if _matches(p.attributes, attributes)]
        assert all(isinstance(p, HistogramDataPoint) for p in found)
        return sum(p.count for p in found), sum(p.sum for p in found)

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """Values (histogram counts) of ``name`` by the attributes ``keys``, zeros left out."""
        found: dict[tuple[str, ...], float] = {}
        for p in self.points.get(name, []):
            value = p.count if isinstance(p, HistogramDataPoint) else p.value
            if value:
                key = tuple(str(p.attributes.get(k, "")) for k in keys)
                found[key] = found.get(key, 0) + value
        return found


def _matches(have: Mapping[str, Any] | None, want: Mapping[str, str]) -> bool:
    have = have or {}
    return all(have.get(k) == v for k, v in want.items())


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scraped(text: str) -> Samples:
    """Prometheus text as samples by sample name (``saga_run_started_total``...)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for have, v in samples.get(name, []) if _matches(have, labels))
