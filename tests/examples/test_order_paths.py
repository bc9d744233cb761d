"""Every path of the order example, end to end through the in-memory runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from coordinator import SagaRefusedError
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Approval, Line
from coordinator.testing import Harness, VirtualClock

BOOK = [Line(sku="book", quantity=1)]


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    ledger = Ledger()
    yield ledger
    # The ledger applies an effect once per key, so its effects cannot show a
    # handler run again for the same key: its run counts do.
    assert {k: n for k, n in ledger.runs.items() if n > 1} == {}


@pytest.fixture
async def harness(ledger: Ledger) -> AsyncIterator[Harness]:
    clock = VirtualClock()
    async with Harness([saga], build_services(ledger, clock), clock=clock) as h:
        yield h


def order(order_id: str, **changes: object) -> Order:
    fields: dict[str, object] = {"order_id": order_id, "lines": BOOK, "total_cents": 4_500}
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


async def run(harness: Harness, o: Order) -> str:
    await harness.start(saga.name, o, saga_id=o.order_id)
    state = await harness.run_until_done(o.order_id)
    return state.status


async def test_completes_with_points(harness: Harness, ledger: Ledger) -> None:
    assert await run(harness, order("o1", member_id="m1")) == "completed"
    assert ledger.of("o1") == [
        "inventory.reserve",
        "loyalty.award",
        "payments.charge",
        "shipping.book",
    ]
    state = await harness.state("o1")
    assert state.data.hold_id == "hold-o1"
    assert state.data.charge_id == "ch-o1"
    assert state.data.tracking_number == "trk-o1"


async def test_points_skipped_without_membership(harness: Harness, ledger: Ledger) -> None:
    assert await run(harness, order("o2")) == "completed"
    assert "loyalty.award" not in ledger.of("o2")
    assert (await harness.state("o2")).steps["points"].status == "skipped"


async def test_declined_card_compensates_what_was_done(harness: Harness, ledger: Ledger) -> None:
    assert await run(harness, order("o3", card="declined", member_id="m1")) == "compensated"
    # The charge reported TaskFailed: nothing applied, nothing refunded.
    assert ledger.of("o3") == [
        "inventory.release",
        "inventory.reserve",
        "loyalty.award",
        "loyalty.revoke",
    ]
    state = await harness.state("o3")
    assert state.steps["charge"].status == "failed"
    assert "CardDeclined" in (state.reason or "")


async def test_out_of_stock_is_not_retried(harness: Harness, ledger: Ledger) -> None:
    o = order("o4", lines=[Line(sku="out-of-stock", quantity=1)])
    assert await run(harness, o) == "compensated"
    assert ledger.of("o4") == []
    state = await harness.state("o4")
    assert state.steps["reserve"].attempt == 1  # give_up_on=("OutOfStock",)


async def test_flaky_card_is_retried_then_completes(harness: Harness, ledger: Ledger) -> None:
    assert await run(harness, order("o5", card="flaky")) == "completed"
    assert ledger.of("o5").count("payments.charge") == 1
    assert (await harness.state("o5")).steps["charge"].attempt == 2


async def test_large_order_waits_for_approval(harness: Harness, ledger: Ledger) -> None:
    o = order("o6", total_cents=250_000)
    await harness.start(saga.name, o, saga_id="o6")
    await harness.advance(timedelta(hours=3))
    state = await harness.state("o6")
    assert state.status == "running"
    assert state.steps["approval"].status == "waiting"
    assert "shipping.book" not in ledger.of("o6")
    await harness.signal("o6", "approval", Approval(approved=True, by="dana"))
    state = await harness.run_until_done("o6")
    assert state.status == "completed"
    assert state.data.approved_by == "dana"
    assert ledger.of("o6").count("shipping.book") == 1


async def test_an_approval_that_does_not_fit_is_refused_and_the_order_waits(
    harness: Harness, ledger: Ledger
) -> None:
    await harness.start(saga.name, order("o6b", total_cents=250_000), saga_id="o6b")
    await harness.advance(timedelta(minutes=5))
    before = await harness.state("o6b")
    with pytest.raises(SagaRefusedError, match="does not fit Approval"):
        await harness.signal("o6b", "approval", {"approved": "yes", "by": "dana"})
    state = await harness.state("o6b")
    assert (state.status, state.revision) == ("running", before.revision)
    assert state.steps["approval"].status == "waiting"
    assert sorted(ledger.of("o6b")) == ["inventory.reserve", "payments.charge"]  # nothing undone
    [refused] = [e for e in await harness.history("o6b") if e.refused]
    assert refused.input_id.startswith("signal:o6b:approval:")
    await harness.signal("o6b", "approval", Approval(approved=True, by="dana"))
    assert (await harness.run_until_done("o6b")).status == "completed"


async def test_rejected_approval_compensates(harness: Harness, ledger: Ledger) -> None:
    await harness.start(saga.name, order("o7", total_cents=250_000), saga_id="o7")
    await harness.advance(timedelta(minutes=5))
    await harness.signal("o7", "approval", Approval(approved=False, by="dana"))
    state = await harness.run_until_done("o7")
    assert state.status == "compensated"
    assert sorted(ledger.of("o7")) == [
        "inventory.release",
        "inventory.reserve",
        "payments.charge",
        "payments.refund",
    ]


async def test_approval_timeout_compensates(harness: Harness, ledger: Ledger) -> None:
    await harness.start(saga.name, order("o8", total_cents=250_000), saga_id="o8")
    state = await harness.run_until_done("o8")
    assert state.status == "compensated"
    assert "no signal 'approval'" in (state.reason or "")
    assert state.finished_at is not None
    assert state.finished_at - state.started_at >= timedelta(hours=24)
    assert ledger.of("o8").count("payments.refund") == 1


async def test_slow_shipper_times_out_and_its_booking_is_undone_after_it(
    harness: Harness, ledger: Ledger
) -> None:
    assert await run(harness, order("o9", shipper="slow")) == "compensated"
    effects = ledger.of("o9")
    # The cancellation waited while the slow booking held its key (the SDK
    # fences a step's compensation behind its running action), then undid it.
    assert effects.count("shipping.book") == 1
    assert effects.count("shipping.cancel") == 1
    assert effects.count("payments.refund") == 1
    history = await harness.history("o9")
    late = [e for e in history if not e.changed and b"ship" in bytes(e.input)]
    assert late, "the late replies of the slow shipper are recorded in the history"


async def test_cancel_mid_saga_compensates(harness: Harness, ledger: Ledger) -> None:
    await harness.start(saga.name, order("o10", total_cents=250_000), saga_id="o10")
    await harness.advance(timedelta(minutes=1))
    await harness.cancel("o10", reason="customer changed their mind")
    state = await harness.run_until_done("o10")
    assert state.status == "cancelled"
    assert state.reason == "customer changed their mind"
    assert ledger.of("o10").count("payments.refund") == 1


async def test_start_is_idempotent_by_saga_id(harness: Harness, ledger: Ledger) -> None:
    first = await harness.start(saga.name, order("o11"), saga_id="o11")
    again, created = await harness.coordinator.start_saga(saga.name, "o11", order("o11"))
    assert not created
    assert again.started_at == first.started_at
    await harness.run_until_done("o11")
    assert ledger.of("o11").count("inventory.reserve") == 1
    assert ledger.runs["o11:reserve:action"] == 1  # the handler ran once, not only its effect


async def test_outbox_and_timers_are_empty_at_rest(harness: Harness) -> None:
    for o in (order("r1"), order("r2", card="declined"), order("r3", shipper="slow")):
        await harness.start(saga.name, o, saga_id=o.order_id)
    for saga_id in ("r1", "r2", "r3"):
        assert (await harness.run_until_done(saga_id)).terminal
    assert await harness.store.outbox_size() == 0
    assert await harness.store.timer_count() == 0


@pytest.mark.timeout(10)
async def test_leaving_the_harness_with_a_handler_parked_on_the_clock() -> None:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        await h.start(saga.name, order("p1", shipper="slow"), saga_id="p1")
        await h.advance(timedelta(seconds=5))
        assert clock.sleepers == 1  # the slow shipper is mid-booking
    assert h.transport.in_flight == 0
