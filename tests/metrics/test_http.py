"""The HTTP server of the processes: probes, /metrics, the port, the MeterProvider."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from readings import scraped, total

from coordinator.service import HttpAddressError, Settings, observe
from coordinator.service._http import HttpServer, Readiness, http_app
from coordinator.service._meters import _exporters
from coordinator.telemetry import SagaMetrics


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Readiness, SagaMetrics]]:
    """A process's observability on a free port, with the coordinator's instruments."""
    async with AsyncExitStack() as stack:
        observed = await observe(stack, Settings(http="127.0.0.1:0"), process="test")
        assert observed.server is not None and observed.meter is not None
        yield observed.server.url, observed.readiness, SagaMetrics(observed.meter)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_livez_answers_while_readyz_waits_for_its_checks(
    served: tuple[str, Readiness, SagaMetrics],
) -> None:
    url, readiness, _metrics = served
    assert (await get(f"{url}/livez")).status_code == 200
    starting = await get(f"{url}/readyz")
    assert starting.status_code == 503
    assert starting.json()["reasons"] == ["starting: connecting to RabbitMQ and Redis"]

    problem = ""

    async def broker() -> str:
        return problem

    async def redis() -> str:
        raise ConnectionError("connection refused")

    readiness.watch("rabbitmq", broker)
    readiness.watch("redis", redis)
    failing = await get(f"{url}/readyz")
    assert (failing.status_code, failing.json()["reasons"]) == (
        503,
        ["redis: ConnectionError: connection refused"],
    )

    async def redis_answers() -> str:
        return ""

    readiness.watch("redis", redis_answers)
    ready = await get(f"{url}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    problem = "not connected (reconnecting)"
    assert (await get(f"{url}/readyz")).json()["reasons"] == [
        "rabbitmq: not connected (reconnecting)"
    ]
    problem = ""
    readiness.drain()
    draining = await get(f"{url}/readyz")
    assert (draining.status_code, draining.json()["reasons"]) == (
        503,
        ["draining: the process is stopping"],
    )
    assert (await get(f"{url}/livez")).status_code == 200


async def test_metrics_in_the_prometheus_text_format(
    served: tuple[str, Readiness, SagaMetrics],
) -> None:
    url, _readiness, metrics = served
    metrics.dead_lettered("coordinator.events", "malformed_json")
    response = await get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = scraped(response.text)
    assert total(samples, "saga_dead_letters_total", saga_dead_letter_reason="malformed_json") == 1
    assert "process_cpu_seconds_total" in samples  # the process collectors are there too


async def test_a_port_in_use_is_an_error_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HttpAddressError, match=f"127.0.0.1:{port}: the port is in use"):
            HttpServer.bind("127.0.0.1", port)


async def test_off_serves_nothing_and_makes_no_meter() -> None:
    async with AsyncExitStack() as stack:
        observed = await observe(stack, Settings(http="off"), process="test")
        assert (observed.server, observed.meter) == (None, None)


async def test_more_routes_go_on_the_same_app() -> None:
    from litestar import get as route

    @route("/hello", sync_to_thread=False)
    def hello() -> str:
        return "hi"

    server = HttpServer.bind("127.0.0.1", 0)
    await server.start(http_app(Readiness(), None))
    try:
        assert server.app is not None
        server.app.register(hello)
        assert (await get(f"{server.url}/hello")).text == "hi"
        assert (await get(f"{server.url}/metrics")).status_code == 404  # no registry given
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, [Http]),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, [Grpc]),
        ({"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_METRICS_EXPORTER": "console,prometheus"}, [ConsoleMetricExporter]),
    ],
)
def test_push_exporters_from_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[type]
) -> None:
    for name in (
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = _exporters()
    assert [type(e) for e in found] == expected
    for exporter in found:
        exporter.shutdown()


_APPLICATION_PROVIDER = """
import asyncio
from contextlib import AsyncExitStack

import httpx
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from coordinator.service import Settings, observe
from coordinator.telemetry import SagaMetrics

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # the application's


async def main() -> None:
    async with AsyncExitStack() as stack:
        observed = await observe(stack, Settings(http="127.0.0.1:0"), process="test")
        SagaMetrics(observed.meter).dead_lettered("q", "malformed_json")
        names = [
            m.name
            for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        ]
        assert "saga.dead_letters" in names, names
        async with httpx.AsyncClient() as client:
            text = (await client.get(observed.server.url + "/metrics")).text
        # prometheus_client's default registry: its own process metrics, not ours.
        assert "process_cpu_seconds_total" in text and "saga_dead_letters" not in text
    print("ok")


asyncio.run(main())
"""


def test_an_application_s_own_meter_provider_is_kept() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _APPLICATION_PROVIDER], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
