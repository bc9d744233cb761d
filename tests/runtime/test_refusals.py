"""A start the coordinator refuses is dead-lettered as before, and its reason is
kept in the store for the client waiting to know whether the start was taken."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contracts import DEFAULT_CODEC, Signal, StartSaga
from coordinator.examples.orders import Ledger, build_services, saga
from coordinator.testing import Harness, VirtualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        yield h


async def _start(h: Harness, saga_id: str, name: str, data: dict[str, object]) -> None:
    body = DEFAULT_CODEC.encode(
        StartSaga(
            message_id=f"start:{saga_id}", saga_id=saga_id, saga_name=name, input=data, sent_at=T0
        )
    )
    await h.transport.publish("events", "test", body, message_id=f"start:{saga_id}")
    await h.settle()


async def test_an_unknown_saga_name_is_recorded_with_the_known_names(harness: Harness) -> None:
    await _start(harness, "s1", "order.plaec", {})
    refusal = await harness.store.refusal("s1")
    assert refusal is not None
    assert refusal.reason == "unknown_saga"
    assert "'order.plaec'" in refusal.detail
    assert "known: order.place" in refusal.detail
    assert refusal.sent_at == T0, "the client recognises its own start by it"
    [dead] = harness.transport.dead_letters
    assert (dead.reason, dead.detail) == ("unknown_saga", refusal.detail)


async def test_an_input_that_does_not_fit_is_recorded_with_the_field(harness: Harness) -> None:
    await _start(harness, "s2", saga.name, {"order_id": "s2", "lines": [], "total_cents": "lots"})
    refusal = await harness.store.refusal("s2")
    assert refusal is not None
    assert refusal.reason == "schema_mismatch"
    assert "$.total_cents" in refusal.detail


async def test_a_start_taken_records_no_refusal(harness: Harness) -> None:
    await _start(harness, "s3", saga.name, {"order_id": "s3", "lines": [], "total_cents": 100})
    assert (await harness.run_until_done("s3")).status == "completed"
    assert await harness.store.refusal("s3") is None


async def test_only_starts_are_recorded_as_refused(harness: Harness) -> None:
    body = DEFAULT_CODEC.encode(
        Signal(message_id="sig", saga_id="ghost", name="approval", data={}, sent_at=T0)
    )
    await harness.transport.publish("events", "test", body, message_id="sig")
    await harness.settle()
    [dead] = harness.transport.dead_letters
    assert dead.reason == "unknown_saga"
    assert await harness.store.refusal("ghost") is None


async def test_history_entries_carry_the_id_of_the_message_that_made_them(
    harness: Harness,
) -> None:
    await _start(harness, "s4", saga.name, {"order_id": "s4", "lines": [], "total_cents": 100})
    await harness.run_until_done("s4")
    history = await harness.store.history("s4")
    assert history[0].input_id == "start:s4"
    assert all(e.input_id for e in history), [e.note for e in history if not e.input_id]
