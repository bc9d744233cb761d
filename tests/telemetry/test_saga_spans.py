"""One trace per saga, through the real runtime on real RabbitMQ and Redis.

Two coordinator replicas and the example's participants run in this process,
each with its own tracer over one in-memory exporter: every span of a saga,
whichever replica or participant made it, must be in the saga's one trace,
with the parents and links the tracing module documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis
from servers import connect_redis, drop_namespace

from coordinator import Coordinator
from coordinator.adapters.memory import MemoryIdempotencyStore, SystemClock
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Line
from coordinator.telemetry import SagaTracer, ServiceTracer, Telemetry, TraceMode
from participants import ParticipantWorker

AMQP_URL = os.environ.get("SAGA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
WAIT = 20.0
PARTICIPANT = "saga-participant"


class Traced:
    """Replicas and participants on one broker namespace and one Redis namespace."""

    def __init__(
        self,
        transport: RabbitTransport,
        redis: Redis,
        ns: str,
        mode: TraceMode,
        sampler: Sampler | None = None,
    ) -> None:
        self.exporter = InMemorySpanExporter()
        self.sampler = sampler
        self.transport = transport
        self.store = RedisSagaStore(redis, namespace=ns, buckets=2, retention=timedelta(hours=1))
        self.clock = SystemClock()
        self.mode = mode
        self.replicas: list[Coordinator] = []
        self.made = 0
        self.workers = [
            ParticipantWorker(
                s,
                transport=transport,
                idempotency=MemoryIdempotencyStore(),
                clock=self.clock,
                tracer=ServiceTracer(self._tracer("saga-participant")),
            )
            for s in build_services(Ledger(), self.clock)
        ]

    def _tracer(self, service: str) -> Any:
        from opentelemetry.sdk.resources import Resource

        provider = TracerProvider(
            resource=Resource.create({"service.name": service}), sampler=self.sampler
        )
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        return provider.get_tracer("test")

    async def replica(self) -> Coordinator:
        tracer = SagaTracer(self._tracer(f"replica-{self.made}"), self.mode)
        self.made += 1
        coordinator = Coordinator(
            [saga],
            transport=self.transport,
            store=self.store,
            clock=self.clock,
            timer_interval=timedelta(seconds=0.05),
            telemetry=Telemetry(tracer=tracer),
        )
        await coordinator.start()
        self.replicas.append(coordinator)
        return coordinator

    def spans_of(self, saga_id: str) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get("saga.id") == saga_id
        ]

    async def ended(self, saga_id: str, status: str) -> None:
        async def probe() -> bool:
            stored = await self.replicas[-1].load(saga_id)
            return stored is not None and stored.status == status

        await eventually(probe)
        await eventually(lambda: self._all_ended(saga_id))

    async def _all_ended(self, saga_id: str) -> bool:
        """The end span is made; and every command's handling and reply spans
        ended, as did the coordinator's processing of every reply: spans end after
        the work they time (a send span at the broker's confirm, a process span
        after the ack), so the end span can come before them."""
        spans = self.spans_of(saga_id)
        names = [s.name for s in spans]
        commands = sum(n.startswith("send commands:") for n in names)
        replies = sum(n.startswith("send events:") for n in names)
        consumed = [s for s in spans if s.kind is SpanKind.CONSUMER]
        handled = sum(s.resource.attributes["service.name"] == PARTICIPANT for s in consumed)
        taken = len(consumed) - handled  # replies the coordinator processed
        return f"end {saga.name}" in names and commands == replies == handled == taken


async def eventually(probe: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT):
        while not await probe():
            await asyncio.sleep(0.02)


@pytest.fixture(params=["continuous"])
async def traced(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Traced]:
    async with opened(ns, request.param) as t:
        yield t


@contextlib.asynccontextmanager
async def opened(ns: str, mode: TraceMode, sampler: Sampler | None = None) -> AsyncIterator[Traced]:
    redis = await connect_redis()
    try:
        transport = await RabbitTransport.connect(
            AMQP_URL,
            namespace=f"test-{uuid.uuid4().hex[:12]}",
            connect_timeout=timedelta(seconds=3),
        )
    except (ConnectionError, OSError, TimeoutError) as exc:
        await redis.aclose()
        reason = f"RabbitMQ is not reachable at {AMQP_URL}: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    t = Traced(transport, redis, ns, mode, sampler)
    for worker in t.workers:
        await worker.start()
    try:
        yield t
    finally:
        for replica in t.replicas:
            await replica.stop()
        for worker in t.workers:
            await worker.stop()
        await transport.delete_namespace()
        await transport.close()
        await drop_namespace(redis, ns)
        await redis.aclose()


def order(saga_id: str, **fields: Any) -> Order:
    lines = [Line(sku="book", quantity=1)]
    return Order(order_id=saga_id, lines=lines, **{"total_cents": 1_000, **fields})


def by_id(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def parent_of(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return None if span.parent is None else spans.get(span.parent.span_id)


async def test_a_completed_saga_is_one_trace_across_the_coordinator_and_participants(
    traced: Traced,
) -> None:
    coordinator = await traced.replica()
    saga_id = f"done-{uuid.uuid4().hex[:8]}"
    await coordinator.start_saga(saga.name, saga_id, order(saga_id))
    await traced.ended(saga_id, "completed")

    spans = traced.spans_of(saga_id)
    assert len({s.context.trace_id for s in spans}) == 1, "one trace per saga"
    index = by_id(spans)
    [root] = [s for s in spans if s.name == f"start {saga.name}"]
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    assert root.attributes is not None and root.attributes["saga.version"] == saga.version

    sends = [s for s in spans if s.kind is SpanKind.PRODUCER]
    commands = [s for s in sends if s.name.startswith("send commands:")]
    replies = [s for s in sends if s.name.startswith("send events:")]
    assert commands and len(replies) == len(commands)
    for command in commands:
        attributes = command.attributes or {}
        assert attributes["messaging.system"] == "rabbitmq"
        assert attributes["messaging.operation.type"] == "send"
        assert attributes["messaging.destination.name"] == command.name.removeprefix("send ")
        assert attributes["saga.id"] == saga_id
        assert "messaging.message.conversation_id" not in attributes  # saga.id says it
        # Sent right after the commit, inside the transition's span.
        assert command.parent is not None
        assert parent_of(command, index).kind in (SpanKind.CONSUMER, SpanKind.INTERNAL)

    # Each participant's processing is a child of the coordinator's send span.
    handled = [
        s
        for s in spans
        if s.kind is SpanKind.CONSUMER
        and s.resource.attributes["service.name"] == "saga-participant"
    ]
    assert len(handled) == len(commands)
    for span in handled:
        parent = parent_of(span, index)
        assert parent is not None and parent in commands
        assert (span.attributes or {})["saga.step"] == (parent.attributes or {}).get(
            "messaging.rabbitmq.destination.routing_key", ""
        ).split(".")[0] or (span.attributes or {})["saga.step"]

    # Each reply is processed in a span whose parent is the saga's root, linked
    # to the participant's send span.
    processed = [s for s in spans if s.kind is SpanKind.CONSUMER and s not in handled]
    assert len(processed) == len(replies)
    for span in processed:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        [link] = span.links
        assert link.context.span_id in {r.context.span_id for r in replies}
        assert (span.attributes or {})["messaging.operation.type"] == "process"

    [end] = [s for s in spans if s.name == f"end {saga.name}"]
    assert end.status.status_code is StatusCode.UNSET
    assert (end.attributes or {})["saga.outcome"] == "completed"
    assert not [s for s in spans if s.name.startswith("compensate ")]


async def test_a_compensated_saga_shows_its_compensations_and_ends_in_error(
    traced: Traced,
) -> None:
    coordinator = await traced.replica()
    saga_id = f"declined-{uuid.uuid4().hex[:8]}"
    await coordinator.start_saga(saga.name, saga_id, order(saga_id, card="declined"))
    await traced.ended(saga_id, "compensated")

    spans = traced.spans_of(saga_id)
    assert len({s.context.trace_id for s in spans}) == 1
    compensations = [s for s in spans if s.name.startswith("compensate ")]
    assert compensations
    assert all((s.attributes or {})["saga.kind"] == "compensation" for s in compensations)
    [end] = [s for s in spans if s.name == f"end {saga.name}"]
    assert end.status.status_code is StatusCode.ERROR
    assert (end.attributes or {})["saga.outcome"] == "compensated"
    failed = [
        s for s in spans if s.kind is SpanKind.CONSUMER and s.status.status_code is StatusCode.ERROR
    ]
    assert failed, "the participant's processing of the declined charge is marked failed"
    assert all((s.attributes or {}).get("error.type") for s in failed)


async def test_another_replica_continues_the_same_trace(traced: Traced) -> None:
    """The first replica stops while the saga waits for approval; a second one,
    with nothing of the saga in memory, takes the signal: its spans join the
    saga's trace through the context stored with the saga."""
    first = await traced.replica()
    saga_id = f"big-{uuid.uuid4().hex[:8]}"
    await first.start_saga(saga.name, saga_id, order(saga_id, total_cents=250_000))

    async def waiting() -> bool:
        state = await first.load(saga_id)
        return state is not None and state.steps["approval"].status == "waiting"

    await eventually(waiting)
    await first.stop()
    traced.replicas.remove(first)
    second = await traced.replica()
    await second.signal(saga_id, "approval", {"approved": True, "by": "dana"}, "approve-1")
    await traced.ended(saga_id, "completed")

    spans = traced.spans_of(saga_id)
    assert len({s.context.trace_id for s in spans}) == 1
    services = {s.resource.attributes["service.name"] for s in spans}
    assert {"replica-0", "replica-1", "saga-participant"} <= services
    [signal] = [s for s in spans if s.name == f"signal {saga.name}" and s.kind is SpanKind.INTERNAL]
    assert signal.resource.attributes["service.name"] == "replica-1"
    assert (signal.attributes or {})["saga.signal.name"] == "approval"


@pytest.mark.parametrize("traced", ["linked"], indirect=True)
async def test_linked_mode_starts_a_trace_per_input_linked_to_the_saga_root(
    traced: Traced,
) -> None:
    coordinator = await traced.replica()
    saga_id = f"linked-{uuid.uuid4().hex[:8]}"
    await coordinator.start_saga(saga.name, saga_id, order(saga_id))
    await traced.ended(saga_id, "completed")

    spans = traced.spans_of(saga_id)
    [root] = [s for s in spans if s.name == f"start {saga.name}"]
    processed = [
        s
        for s in spans
        if s.kind is SpanKind.CONSUMER and s.resource.attributes["service.name"] != PARTICIPANT
    ]
    assert processed
    for span in processed:
        assert span.parent is None, "each input is the root of its own trace"
        assert span.context.trace_id != root.context.trace_id
        linked = {link.context.span_id for link in span.links}
        assert root.context.span_id in linked
    # A trace per input: the root's, and one for each reply taken.
    assert len({s.context.trace_id for s in spans}) == 1 + len(processed)


class EveryOtherSaga(Sampler):
    """A head sampler deciding at a saga's root span: it keeps the sagas whose id
    ends in an even digit. A deterministic stand-in for ``traceidratio``, which
    draws on the random trace id. Any other root span (a span that lost its
    parent, which should not exist) is kept, so that a broken chain shows: in a
    kept saga as a second trace, in a dropped one as a stray span."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        keep = not name.startswith("start ") or str((attributes or {})["saga.id"])[-1] in "02468"
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "EveryOtherSaga"


async def test_a_sampled_saga_is_whole_and_an_unsampled_one_leaves_no_span(ns: str) -> None:
    # Every process samples as OTEL_TRACES_SAMPLER=parentbased_* configures it: the
    # root decides, and every later span, in any process, follows its parent.
    sampler = ParentBased(
        root=EveryOtherSaga(), remote_parent_sampled=ALWAYS_ON, remote_parent_not_sampled=ALWAYS_OFF
    )
    async with opened(ns, "continuous", sampler) as traced:
        coordinator = await traced.replica()
        ids = [f"sampled-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
        for saga_id in ids:
            await coordinator.start_saga(saga.name, saga_id, order(saga_id))
        kept = [i for i in ids if i[-1] in "02468"]
        for saga_id in kept:
            await traced.ended(saga_id, "completed")
        for saga_id in ids:
            await eventually(lambda i=saga_id: _completed(coordinator, i))
        await coordinator.stop()  # nothing more to come from the coordinator
        for worker in traced.workers:
            await worker.stop()
        for saga_id in ids:
            spans = traced.spans_of(saga_id)
            if saga_id in kept:
                assert len({s.context.trace_id for s in spans}) == 1, saga_id
                assert await traced._all_ended(saga_id), saga_id
                names = {s.name for s in spans}
                assert {f"start {saga.name}", f"end {saga.name}"} <= names, names
            else:
                assert spans == [], [s.name for s in spans]
        traced.replicas.clear()
        traced.workers.clear()


async def _completed(coordinator: Coordinator, saga_id: str) -> bool:
    stored = await coordinator.load(saga_id)
    return stored is not None and stored.status == "completed"
