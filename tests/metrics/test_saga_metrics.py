"""The coordinator's metrics, read with the SDK's in-memory reader, after the shop
scenario runs through the in-memory runtime on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from readings import Readings
from shop_support import (
    COMMANDS,
    COMPENSATIONS,
    FINISHED,
    NAME,
    REPLIES,
    SCENARIO,
    STEP_DURATIONS,
    Order,
    Shipping,
    definition,
    services,
)

from coordinator.telemetry import (
    ACTIVE_STATUSES,
    SECONDS_BUCKETS,
    SagaMetrics,
    StoreSampler,
    Telemetry,
)
from coordinator.testing import Harness


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> SagaMetrics:
    return SagaMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))


@pytest.fixture
async def ran(metrics: SagaMetrics) -> AsyncIterator[Harness]:
    """The scenario, run to its end: every order settled, ``down-2`` parked."""
    async with Harness([definition()], services(), telemetry=Telemetry(metrics=metrics)) as h:
        shipping = Shipping(h.transport)
        await shipping.start()
        for order_id in SCENARIO[:-1]:
            await h.start(NAME, Order(order_id=order_id), saga_id=order_id)
            state = await h.run_until_done(order_id, limit=timedelta(minutes=1))
            assert state.terminal, (order_id, state.status)
        await h.start(NAME, Order(order_id="down-2"), saga_id="down-2")
        await h.advance(timedelta(seconds=5))
        assert (await h.state("down-2")).steps["charge"].status == "awaiting_service"
        yield h
        await shipping.stop()


async def test_sagas_started_and_finished_by_outcome(
    ran: Harness, reader: InMemoryMetricReader
) -> None:
    got = Readings(reader)
    assert got.value("saga.run.started", **{"saga.name": NAME}) == len(SCENARIO)
    assert got.by("saga.run.finished", "saga.name", "saga.outcome") == {
        (NAME, outcome): n for outcome, n in FINISHED.items()
    }
    assert got.by("saga.run.duration", "saga.outcome") == {
        (outcome,): n for outcome, n in FINISHED.items()
    }


async def test_step_durations_by_step_kind_and_outcome(
    ran: Harness, reader: InMemoryMetricReader
) -> None:
    got = Readings(reader)
    durations = got.by(
        "saga.step.duration", "saga.step.name", "saga.step.kind", "saga.step.outcome"
    )
    assert durations == STEP_DURATIONS
    # On the virtual clock: the booking that was never answered took its timeout exactly,
    # and the flaky charge its backoff (the replies take no time).
    assert got.histogram("saga.step.duration", **{"saga.step.outcome": "timed_out"}) == (1, 1.0)
    _count, charges = got.histogram("saga.step.duration", **{"saga.step.name": "charge"})
    assert charges == pytest.approx(0.1 + 0.1)  # flaky-1 and down-1 each waited 100 ms


async def test_retries_compensations_and_timeouts(
    ran: Harness, reader: InMemoryMetricReader
) -> None:
    got = Readings(reader)
    assert got.by("saga.step.retries", "saga.step.name", "saga.step.kind") == {
        ("charge", "action"): 2
    }
    assert got.by("saga.step.compensations", "saga.step.name") == {
        (step,): n for step, n in COMPENSATIONS.items()
    }
    assert got.by("saga.timeouts", "saga.step.name", "saga.timeout.kind") == {("ship", "step"): 1}


async def test_timer_lag_and_messages(ran: Harness, reader: InMemoryMetricReader) -> None:
    got = Readings(reader)
    # Three retries fell due and one timeout, each fired at its due time on this clock.
    assert got.histogram("saga.timer.lag") == (4, 0.0)
    sent = got.by("messaging.client.sent.messages", "messaging.destination.name")
    assert {key: sent[(f"saga.commands:{key}",)] for key in COMMANDS} == COMMANDS
    assert sent[(f"saga.lifecycle:{NAME}.started",)] == len(SCENARIO)
    # Every reply but the slow booking's; the starts were calls, not messages.
    consumed = got.by("messaging.client.consumed.messages", "messaging.destination.name")
    assert consumed == {("saga.coordinator.events",): REPLIES}


async def test_the_breaker_opened_once_and_says_so(
    ran: Harness, reader: InMemoryMetricReader
) -> None:
    got = Readings(reader)
    transitions = "saga.circuit_breaker.transitions"
    assert got.by(transitions, "saga.service", "saga.circuit_breaker.state") == {("pay", "open"): 1}
    state = got.by("saga.circuit_breaker.state", "saga.service", "saga.circuit_breaker.state")
    # One series per service and state: 1 for the state it is in, 0 for the others.
    assert state == {("pay", "open"): 1, ("stock", "closed"): 1, ("shipping", "closed"): 1}
    assert len(got.points["saga.circuit_breaker.state"]) == 3 * 3


async def test_sampled_counts_from_the_store(
    ran: Harness, metrics: SagaMetrics, reader: InMemoryMetricReader
) -> None:
    assert "saga.run.active" not in Readings(reader).points, "nothing before the first sample"
    sampler = StoreSampler(ran.store, metrics, names=[NAME], services=["stock", "pay", "shipping"])
    await sampler.sample()
    got = Readings(reader)
    assert got.by("saga.run.active", "saga.name", "saga.status") == {(NAME, "running"): 1}
    assert {p.attributes["saga.status"] for p in got.points["saga.run.active"]} == set(
        ACTIVE_STATUSES
    )
    assert got.by("saga.run.parked", "saga.service") == {("pay",): 1}
    assert got.value("saga.outbox.backlog") == await ran.store.outbox_size()


async def test_dead_letters_by_queue_and_reason(
    metrics: SagaMetrics, reader: InMemoryMetricReader
) -> None:
    async with Harness([definition()], telemetry=Telemetry(metrics=metrics)) as h:
        await h.transport.publish("events", "x.TaskCompleted", b"not json", message_id="junk")
        await h.settle()
    got = Readings(reader)
    assert got.by("saga.dead_letters", "messaging.destination.name", "saga.dead_letter.reason") == {
        ("saga.coordinator.events", "malformed_json"): 1
    }


def test_histograms_have_seconds_buckets_from_a_millisecond_to_a_day(
    metrics: SagaMetrics, reader: InMemoryMetricReader
) -> None:
    metrics.timer_fired(timedelta(hours=3))
    [point] = Readings(reader).points["saga.timer.lag"]
    assert tuple(point.explicit_bounds) == SECONDS_BUCKETS
    assert (SECONDS_BUCKETS[0], SECONDS_BUCKETS[-1]) == (0.001, 86400.0)
    assert point.bucket_counts[SECONDS_BUCKETS.index(14400.0)] == 1


async def test_no_saga_id_is_a_label(ran: Harness, reader: InMemoryMetricReader) -> None:
    values = {
        str(v)
        for points in Readings(reader).points.values()
        for p in points
        for v in (p.attributes or {}).values()
    }
    assert not values & set(SCENARIO)
    assert not any(order_id in v for v in values for order_id in SCENARIO)
