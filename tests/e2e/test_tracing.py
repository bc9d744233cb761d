"""One trace per saga, as a collector gets it: coordinator replicas and the
example participants as real processes export over OTLP/HTTP to a receiver
started by the test (``otlp.py``), which decodes the protobuf; every saga's
spans are then checked against the tracing plan (``saga_traces.check_saga``).

The processes get ``OTEL_EXPORTER_OTLP_ENDPOINT`` only (so tracing is on, with
the default http/protobuf protocol) and ``OTEL_BSP_SCHEDULE_DELAY=100``: the
batch processor exports every 5 s by default, so the spans of a saga that ended
would take that long to arrive, and a replica killed with SIGKILL (it cannot
flush) would lose up to 5 s of them; at 100 ms the tests wait a fraction of a
second for them. Each replica names itself with ``service.instance.id``
(``OTEL_RESOURCE_ATTRIBUTES``), so a trace shows which one did what.
"""

from __future__ import annotations

import contextlib
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Tracer
from otlp import OtlpReceiver, Span
from procs import Deployment, poll
from saga_traces import COORDINATOR, MESSAGE_ID, check_saga, incomplete, of_saga
from trace_picture import render_svg
from workload import SAGA, Order

from coordinator import SagaClient
from coordinator.service import open_client

# The application that starts and signals sagas: its spans are the callers'.
SHOP = "shop"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as found:
        yield found
        assert not found.errors, f"requests the receiver could not decode: {found.errors}"


def traced(deploy: Callable[..., Deployment], receiver: OtlpReceiver) -> Deployment:
    """A deployment whose processes export their spans to ``receiver``."""
    d = deploy()
    # Whatever OTEL_* the test runner has would change what the processes export.
    d.env = {k: v for k, v in d.env.items() if not k.startswith("OTEL_")}
    d.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    d.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    return d


def replica(n: int) -> dict[str, str]:
    return {"OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=replica-{n}"}


@contextlib.contextmanager
def shop_tracer(receiver: OtlpReceiver) -> Iterator[Tracer]:
    """The tracer of an application using the client: not the global one, so
    that nothing else in this test process is traced."""
    provider = TracerProvider(resource=Resource.create({"service.name": SHOP}))
    exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("e2e")
    finally:
        provider.shutdown()


def shop_span(receiver: OtlpReceiver, name: str) -> Span:
    found = [s for s in receiver.spans() if s.service == SHOP and s.name == name]
    assert len(found) == 1, f"{len(found)} spans {name!r} from the shop"
    return found[0]


async def step_waiting(client: SagaClient, saga_id: str, step: str) -> None:
    async def probe() -> bool | None:
        state = await client.get(saga_id)
        waiting = state is not None and state["steps"].get(step, {}).get("status") == "waiting"
        return True if waiting else None

    await poll(f"{saga_id} to wait for {step}", probe, timeout=30)


async def ended(client: SagaClient, saga_id: str, status: str) -> None:
    state = await client.wait(saga_id, timeout=30)
    got = None if state is None else state.status
    assert got == status, f"{saga_id} ended {got}, expected {status}"


async def trace_of(receiver: OtlpReceiver, saga_id: str, *, ended: bool = True) -> list[Span]:
    """The saga's spans, once none is missing (see ``saga_traces.incomplete``)."""

    async def arrived() -> list[Span] | None:
        spans = of_saga(receiver.spans(), saga_id)
        return None if incomplete(spans, SAGA, ended=ended) else spans

    def missing() -> str:
        return "\n".join(incomplete(of_saga(receiver.spans(), saga_id), SAGA, ended=ended))

    return await poll(f"the spans of {saga_id}", arrived, timeout=20, describe=missing)


def large(order_id: str, **changes: Any) -> dict[str, Any]:
    """A large order: it waits for a manager's approval (a signal) before shipping."""
    return {**Order(order_id, "large").input(), **changes}


@pytest.mark.timeout(90)
def listing(traces: Iterable[Sequence[Span]]) -> list[str]:
    """Every span of the sagas, in the order they started, for a failure's message."""
    return [
        f"  {span} id={span.attributes.get(MESSAGE_ID, '')} "
        f"timer={span.attributes.get('saga.timer', '')}"
        for spans in traces
        for span in sorted(spans, key=lambda s: s.start_ns)
    ]


async def test_one_trace_per_saga_across_processes(
    deploy: Callable[..., Deployment], receiver: OtlpReceiver
) -> None:
    """Two replicas and the participants: a completed saga started inside the
    caller's span, a compensated one, and one that retries a step on a timer
    and waits for a signal sent inside the caller's span."""
    d = traced(deploy, receiver)
    d.coordinator(env=replica(0))
    d.coordinator(env=replica(1))
    # The participant compresses its exports, as a deployment to a remote collector would.
    d.participant(env={"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    await d.wait_ready(coordinators=2, participants=1)

    plain = Order("trace-plain", "plain", member=True)
    declined = Order("trace-declined", "declined", member=True)
    approved = "trace-approved"
    with shop_tracer(receiver) as shop:
        async with open_client(d.settings) as client:
            with shop.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
                await client.start(SAGA, plain.input(), plain.id)
            await client.start(SAGA, declined.input(), declined.id)
            # A flaky card: the charge fails once and is retried after a backoff timer.
            await client.start(SAGA, large(approved, card="flaky"), approved)
            await step_waiting(client, approved, "approval")
            with shop.start_as_current_span("POST /approvals", kind=SpanKind.SERVER):
                signal_id = await client.signal(
                    approved, "approval", {"approved": True, "by": "e2e"}
                )
            await ended(client, plain.id, "completed")
            await ended(client, declined.id, "compensated")
            await ended(client, approved, "completed")
    placed, approval = shop_span(receiver, "POST /orders"), shop_span(receiver, "POST /approvals")

    traces = {
        saga_id: await trace_of(receiver, saga_id) for saga_id in (plain.id, declined.id, approved)
    }
    problems = check_saga(
        traces[plain.id],
        plain.id,
        outcome="completed",
        commands=["reserve:action:1", "charge:action:1", "points:action:1", "ship:action:1"],
        caller=placed,
        links={f"start:{plain.id}": placed},
    )
    problems += check_saga(
        traces[declined.id],
        declined.id,
        outcome="compensated",
        commands=[
            "reserve:action:1",
            "charge:action:1",
            "points:action:1",
            "points:compensation:1",
            "reserve:compensation:1",
        ],
        compensated=["reserve", "points"],
    )
    problems += check_saga(
        traces[approved],
        approved,
        outcome="completed",
        commands=["reserve:action:1", "charge:action:1", "charge:action:2", "ship:action:1"],
        timers=1,
        links={signal_id: approval},
    )
    assert not problems, "\n".join([*problems, *listing(traces.values())])
    assert len({spans[0].trace_id for spans in traces.values()}) == 3, "sagas share a trace"
    assert receiver.encodings["gzip"] > 0, f"no gzip export seen: {receiver.encodings}"

    # The README's picture is drawn from spans like these.
    svg = ET.fromstring(render_svg(traces[declined.id], "declined"))
    bars = [e for e in svg.iter("{http://www.w3.org/2000/svg}rect") if e.find("*") is not None]
    assert len(bars) == len(traces[declined.id])


@pytest.mark.timeout(90)
async def test_one_trace_after_a_replica_is_killed(
    deploy: Callable[..., Deployment], receiver: OtlpReceiver
) -> None:
    """A saga waits for a signal; the replica that ran it so far is SIGKILLed and
    another replica takes the signal and finishes it: the second replica's spans
    join the trace of the first's, under the root context stored with the saga.

    A SIGKILLed process cannot flush its spans: the test waits until the first
    replica's have arrived before killing it (what a batch not yet exported
    would lose is not what this test is about).
    """
    d = traced(deploy, receiver)
    first = d.coordinator(env=replica(0))
    d.participant()
    await d.wait_ready(coordinators=1, participants=1)

    saga_id = "trace-failover"
    async with open_client(d.settings) as client:
        await client.start(SAGA, large(saga_id, member_id="m-failover"), saga_id)
        await step_waiting(client, saga_id, "approval")
        before = await trace_of(receiver, saga_id, ended=False)
        assert first.kill() == -signal.SIGKILL
        d.coordinator(env=replica(1))
        await d.wait_ready(coordinators=1, participants=1)
        await client.signal(saga_id, "approval", {"approved": True, "by": "e2e"})
        await ended(client, saga_id, "completed")
    spans = await trace_of(receiver, saga_id)

    problems = check_saga(
        spans,
        saga_id,
        outcome="completed",
        commands=["reserve:action:1", "charge:action:1", "points:action:1", "ship:action:1"],
    )
    assert not problems, "\n".join(problems)
    earlier = {s.span_id for s in before}
    by_replica: dict[str, set[str]] = {}
    for span in spans:
        if span.service == COORDINATOR:
            by_replica.setdefault(span.instance, set()).add(span.name)
    assert set(by_replica) == {"replica-0", "replica-1"}, by_replica
    # Everything up to the wait was the first replica's; everything after, the second's.
    for span in spans:
        if span.service == COORDINATOR:
            want = "replica-0" if span.span_id in earlier else "replica-1"
            assert span.instance == want, f"{span} from {span.instance}, expected {want}"
    later = [s for s in spans if s.span_id not in earlier and s.service == COORDINATOR]
    assert {"process coordinator.events", "signal order.place", "end order.place"} <= {
        s.name for s in later
    }, sorted(s.name for s in later)
