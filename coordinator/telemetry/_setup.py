"""Tracing set up from the standard ``OTEL_*`` environment, for ``saga run`` and
``saga participant``.

An application that set its own ``TracerProvider`` keeps it: ours is made only
when none is set, and only when the environment asks for an export
(``OTEL_TRACES_EXPORTER``, or an OTLP endpoint). Otherwise tracing is off and
the runtime makes no span at all.

The SDK's own environment configurator (``opentelemetry.sdk._configuration``) is
private and sets up logs and metrics too, so the few lines that pick the
exporters are here; the exporters come from their packages' entry points, the
sampler from ``OTEL_TRACES_SAMPLER`` (read by the SDK itself), the resource
from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Final

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from coordinator._errors import SettingsError

__all__ = ["INSTRUMENTATION", "exporter_names", "shutdown_tracing", "tracer_from_environment"]

INSTRUMENTATION: Final = "saga-coordinator"
_PROTOCOLS: Final = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for (entry point names); none: off."""
    names = env.get(OTEL_TRACES_EXPORTER, "").strip()
    if not names:
        # An endpoint alone is a request for OTLP, as every OTel SDK reads it.
        endpoint = env.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or env.get(
            OTEL_EXPORTER_OTLP_ENDPOINT
        )
        names = "otlp" if endpoint else "none"
    if names.lower() == "none":
        return []
    protocol = (
        env.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) or env.get(OTEL_EXPORTER_OTLP_PROTOCOL) or ""
    ).strip() or "http/protobuf"
    found = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            if protocol not in _PROTOCOLS:
                raise SettingsError(
                    f"{OTEL_EXPORTER_OTLP_PROTOCOL}={protocol!r} is not supported; "
                    "use grpc or http/protobuf"
                )
            name = _PROTOCOLS[protocol]
        found.append(name)
    return found


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise SettingsError(
            f"{OTEL_TRACES_EXPORTER} names {name!r}, which is not installed; "
            "use otlp, otlp_proto_http, otlp_proto_grpc, console or none"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


def tracer_from_environment(
    default_service: str, env: Mapping[str, str] | None = None
) -> trace.Tracer | None:
    """This process's tracer, or None when tracing is not configured.

    ``default_service`` is the ``service.name`` unless ``OTEL_SERVICE_NAME`` says.

    Raises:
        SettingsError: the environment names an exporter or protocol we do not have.
    """
    env = os.environ if env is None else env
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the application did not set one
        names = exporter_names(env)
        if not names:
            return None
        service = env.get(OTEL_SERVICE_NAME) or default_service
        resource = Resource.create({SERVICE_NAME: service})
        provider = TracerProvider(resource=resource)
        for name in names:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        trace.set_tracer_provider(provider)
    return provider.get_tracer(INSTRUMENTATION)


def shutdown_tracing() -> None:
    """Export what is left (at the end of a process)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
