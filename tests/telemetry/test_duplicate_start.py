"""A start that reaches the coordinator twice (a client sending it again, a
redelivery after a replica died before its ack) is refused the second time,
and must not open a second root, and a second trace, for the same saga."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import DEFAULT_CODEC, StartSaga, routes
from coordinator import Coordinator
from coordinator.adapters.memory import MemorySagaStore, MemoryTransport
from coordinator.examples.orders import saga
from coordinator.telemetry import SagaTracer, Telemetry
from coordinator.testing import VirtualClock


def start(message_id: str) -> bytes:
    data = {"order_id": "o-1", "lines": [], "total_cents": 100}
    return DEFAULT_CODEC.encode(
        StartSaga(
            message_id=message_id,
            saga_id="o-1",
            saga_name=saga.name,
            input=data,
            sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )


@pytest.mark.parametrize("second", ["start:o-1", "start:o-1:again"], ids=["redelivered", "resent"])
async def test_a_start_received_twice_leaves_one_trace(second: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock = VirtualClock()
    transport = MemoryTransport()
    coordinator = Coordinator(
        [saga],
        transport=transport,
        store=MemorySagaStore(clock=clock),
        clock=clock,
        telemetry=Telemetry(tracer=SagaTracer(provider.get_tracer("test"))),
    )
    await coordinator.start(loops=False)
    try:
        for message_id in ("start:o-1", second):
            await transport.publish(
                "events", routes.start_key(saga.name), start(message_id), message_id=message_id
            )
            await transport.drain()
    finally:
        await coordinator.stop()
        await transport.close()

    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == f"start {saga.name}"]
    assert len(roots) == 1, [s.name for s in spans]
    assert {s.context.trace_id for s in spans} == {roots[0].context.trace_id}
    ids = {s.context.span_id for s in spans}
    orphans = [
        s.name for s in spans if s is not roots[0] and s.parent and s.parent.span_id not in ids
    ]
    assert not orphans
    # The refused start's processing went with its root: only the first's is there.
    processed = [
        s.attributes.get("messaging.message.id") for s in spans if s.kind.name == "CONSUMER"
    ]
    assert processed == ["start:o-1"]
