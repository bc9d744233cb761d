"""The demo's payments outage, run through the in-memory harness: the breaker opens,
the sagas park and send nothing, one probe goes out at half-open, and every
parked saga completes with its charge applied once."""

from __future__ import annotations

import msgspec
import pytest

from coordinator.examples.orders._outage import ORDERS, OUTAGE_BREAKERS, OutageRun, payments_outage


@pytest.fixture
async def run() -> OutageRun:
    return await payments_outage()


def kinds(run: OutageRun, order_id: str) -> list[str]:
    return [msgspec.json.decode(e.input)["type"] for e in run.histories[order_id]]


async def test_every_parked_saga_completes_with_each_charge_applied_once(run: OutageRun) -> None:
    assert run.parked_while_down == len(ORDERS)
    for order_id in ORDERS:
        state = run.states[order_id]
        assert state.status == "completed", (order_id, state.reason)
        assert run.ledger.of(order_id) == [
            "inventory.reserve",
            "payments.charge",
            "shipping.book",
        ]
        assert run.ledger.effects[("payments", "charge", order_id)] == 1
        assert kinds(run, order_id).count("ServiceRecovered") == 1


async def test_the_breaker_opens_half_opens_after_its_reset_timeout_and_closes(
    run: OutageRun,
) -> None:
    opened, half_open, closed = run.events
    assert (opened.old, opened.new) == ("closed", "open")
    assert opened.reason == f"{OUTAGE_BREAKERS['payments'].fail_max} consecutive failures"
    assert (half_open.old, half_open.new) == ("open", "half-open")
    assert half_open.at - opened.at == OUTAGE_BREAKERS["payments"].reset_timeout
    assert (closed.old, closed.new) == ("half-open", "closed")
    assert closed.reason == "1 probe(s) succeeded"
    # Payments came back while it was open: the first probe closed it.
    assert opened.at < run.up_at < half_open.at


async def test_nothing_is_sent_to_payments_while_the_breaker_is_open(run: OutageRun) -> None:
    opened, half_open, _ = run.events
    for order_id in ORDERS:
        for entry in run.histories[order_id]:
            if opened.at < entry.at < half_open.at:
                assert "charge sent" not in entry.note, (order_id, entry.note)
    # The orders placed after it opened parked at once: their only charge is the one
    # sent when they resumed.
    late = [o for o in ORDERS if run.histories[o][0].at > opened.at]
    assert late, "some orders must come in while the breaker is open"
    for order_id in late:
        notes = [e.note for e in run.histories[order_id]]
        assert any("charge waits: payments is unavailable" in n for n in notes)
        assert run.states[order_id].steps["charge"].attempt == 1
