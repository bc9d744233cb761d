"""The process's OpenTelemetry ``MeterProvider``, set up only when something reads it.

A provider is made when the process serves ``/metrics`` (a Prometheus reader on
a registry of the process's own, with the ``process_*`` and ``python_*``
collectors), or when the standard variables ask for OTLP
(``OTEL_METRICS_EXPORTER=otlp``, or an ``OTEL_EXPORTER_OTLP_ENDPOINT``/
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` without ``OTEL_METRICS_EXPORTER=none``;
the protocol from ``OTEL_EXPORTER_OTLP[_METRICS]_PROTOCOL``, ``http/protobuf``
by default, ``grpc`` too; ``console`` prints them). Otherwise there is none and
the metrics cost nothing. ``OTEL_SDK_DISABLED=true`` turns everything off.

An application that set the global provider itself (in a saga or service
module, before the process starts) keeps it: the instruments are made on it,
and ``/metrics`` serves ``prometheus_client``'s default registry, where its own
``PrometheusMetricReader`` registers unless told otherwise.
"""

from __future__ import annotations

import os
import weakref
from contextlib import AsyncExitStack
from importlib.metadata import PackageNotFoundError, version
from typing import final

import prometheus_client
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter

# The provider ``get_meter_provider`` returns until one is set: not public API.
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import CollectorRegistry

__all__ = ["Meters", "open_meters"]

# Providers made here: a second process in the same interpreter (tests) makes its
# own instead of taking an earlier one's for an application's.
_OURS: weakref.WeakSet[metrics.MeterProvider] = weakref.WeakSet()


@final
class Meters:
    """Where a process makes its instruments, and what ``/metrics`` serves.

    Attributes:
        meter: None when nothing reads metrics: make no instruments then.
        registry: The registry ``/metrics`` serves; None when not serving.
    """

    def __init__(self, meter: Meter | None, registry: CollectorRegistry | None) -> None:
        self.meter = meter
        self.registry = registry


def _package_version() -> str:
    try:
        return version("saga-coordinator")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return ""


def _env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _exporters() -> list[MetricExporter]:
    """The push exporters the standard ``OTEL_*`` variables ask for."""
    asked = {e.strip().lower() for e in _env("OTEL_METRICS_EXPORTER").split(",") if e.strip()}
    if not asked and _env("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        asked = {"otlp"}
    found: list[MetricExporter] = []
    if "otlp" in asked:
        protocol = _env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcExporter,
            )

            found.append(GrpcExporter())
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpExporter,
            )

            found.append(HttpExporter())
    if "console" in asked:
        found.append(ConsoleMetricExporter())
    return found


def _resource(process: str) -> Resource:
    """The resource from ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``, named
    ``process`` when they do not name the service."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: process}))
    return found


def open_meters(stack: AsyncExitStack, *, serving: bool, process: str) -> Meters:
    """The process's meter (None when nothing would read it) and ``/metrics``' registry.

    Args:
        stack: Shuts the provider down (a last OTLP export) when it unwinds.
        serving: Whether the process serves ``/metrics``.
        process: The ``service.name`` when ``OTEL_SERVICE_NAME`` gives none, and the meter's name.
    """
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return Meters(None, CollectorRegistry() if serving else None)
    current = metrics.get_meter_provider()
    if not isinstance(current, _ProxyMeterProvider) and current not in _OURS:
        registry = prometheus_client.REGISTRY if serving else None
        return Meters(current.get_meter(process, _package_version()), registry)
    readers: list[MetricReader] = []
    registry = None
    if serving:
        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
        prometheus_client.ProcessCollector(registry=registry)
        prometheus_client.PlatformCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
    readers += [PeriodicExportingMetricReader(exporter) for exporter in _exporters()]
    if not readers:
        return Meters(None, None)
    provider = MeterProvider(metric_readers=readers, resource=_resource(process))
    _OURS.add(provider)
    if isinstance(current, _ProxyMeterProvider):
        # The application's own code (handlers) can then reach it through the API.
        metrics.set_meter_provider(provider)
    stack.callback(provider.shutdown)
    return Meters(provider.get_meter(process, _package_version()), registry)
