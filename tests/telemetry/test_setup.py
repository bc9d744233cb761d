"""Tracing is set up from the standard OTEL_* variables, and only from them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from coordinator import SettingsError
from coordinator.telemetry._setup import exporter_names, tracer_from_environment


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}, ["otlp_proto_http"]),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp_proto_http"]),
        # An explicit "none" wins over an endpoint set for metrics or logs.
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
    ],
)
def test_the_exporters_come_from_the_standard_variables(
    env: dict[str, str], names: list[str]
) -> None:
    assert exporter_names(env) == names


def test_an_unknown_protocol_or_exporter_is_one_clear_error() -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(SettingsError, match="'zipkin', which is not installed"):
        tracer_from_environment("x", env={"OTEL_TRACES_EXPORTER": "zipkin"})


def test_nothing_is_set_up_without_the_variables() -> None:
    assert tracer_from_environment("x", env={}) is None


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_application_provider_is_kept() -> None:
    """A provider the application set is used as it is, exporters and all; ours is
    made only when none is set (a fresh process each: the provider is global)."""
    out = _run(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from coordinator.telemetry import tracer_from_environment
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        tracer = tracer_from_environment("x", env={})
        print(tracer is not None and trace.get_tracer_provider() is mine)
        """
    )
    assert out == "True"
    out = _run(
        """
        from opentelemetry import trace
        from coordinator.telemetry import tracer_from_environment
        env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "shop"}
        tracer = tracer_from_environment("saga-coordinator", env=env)
        provider = trace.get_tracer_provider()
        print(tracer is not None, provider.resource.attributes["service.name"])
        """
    )
    assert out == "True shop"
