"""Replay on the in-memory runtime: every saga of a mixed run of the order example
replays to its recorded decisions and stored state; a changed definition is
named incompatible at the first input it decides otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from msgspec.structs import replace
from order_versions import compatible_v2, double_charge_v1, no_charge_retry_v2, order_saga

from coordinator import SagaRefusedError
from coordinator.examples.orders import Ledger, Order, Outages, build_services, saga
from coordinator.examples.orders._outage import ORDERS, payments_outage
from coordinator.examples.orders.messages import Approval, Line
from coordinator.ports import HistoryEntry
from coordinator.replay import Replayed, describe_input, replay
from coordinator.testing import Harness, VirtualClock

BOOK = [Line(sku="book", quantity=1)]


def order(order_id: str, **changes: object) -> Order:
    fields: dict[str, object] = {"order_id": order_id, "lines": BOOK, "total_cents": 4_500}
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


def kinds(entries: Sequence[HistoryEntry]) -> list[str]:
    return [msgspec.json.decode(e.input)["type"] for e in entries]


async def stored(h: Harness, saga_id: str) -> bytes:
    found = await h.store.load(saga_id)
    assert found is not None
    return found.state


async def mixed_run() -> Runs:
    """Each path of the order saga, and an operator at work: every saga's history
    and stored state, by id."""
    clock, ledger = VirtualClock(), Ledger()
    runs: dict[str, tuple[list[HistoryEntry], bytes]] = {}
    async with Harness([saga], build_services(ledger, clock), clock=clock) as h:
        plain = {
            "completed": order("completed", member_id="m1"),
            "declined": order("declined", card="declined", member_id="m2"),
            "out-of-stock": order("out-of-stock", lines=[Line(sku="out-of-stock", quantity=1)]),
            "flaky": order("flaky", card="flaky"),  # charge fails once, then is retried
            "timed-out": order("timed-out", shipper="slow"),
        }
        for saga_id, data in plain.items():
            await h.start(saga.name, data, saga_id=saga_id)
            await h.run_until_done(saga_id)
        # Signalled: approved; and rejected, which compensates.
        for saga_id, approved in (("approved", True), ("rejected", False)):
            await h.start(saga.name, order(saga_id, total_cents=250_000), saga_id=saga_id)
            await h.advance(timedelta(hours=1))
            await h.signal(saga_id, "approval", Approval(approved=approved, by="kim"))
            await h.run_until_done(saga_id)
        # Cancelled while it waits for its approval; a second cancel is refused.
        await h.start(saga.name, order("cancelled", total_cents=250_000), saga_id="cancelled")
        await h.advance(timedelta(minutes=5))
        await h.cancel("cancelled", "the customer changed their mind")
        await h.run_until_done("cancelled")
        with pytest.raises(SagaRefusedError):
            await h.cancel("cancelled")
        # Paused by an operator: the approval arrives while paused, held until resumed.
        await h.start(saga.name, order("paused", total_cents=250_000), saga_id="paused")
        await h.advance(timedelta(minutes=5))
        await h.coordinator.pause("paused", "pause-1", by="ops")
        await h.signal("paused", "approval", Approval(approved=True, by="kim"))
        await h.advance(timedelta(minutes=5))
        await h.coordinator.resume("paused", "resume-1", by="ops")
        await h.run_until_done("paused")
        for saga_id in (*plain, "approved", "rejected", "cancelled", "paused"):
            runs[saga_id] = (list(await h.history(saga_id)), await stored(h, saga_id))
    runs.update(await failed_then_retried())
    outage = await payments_outage()  # parked behind the payments breaker, then resumed
    for saga_id in ORDERS:
        state = outage.states[saga_id]
        runs[saga_id] = (outage.histories[saga_id], msgspec.json.encode(state))
    return runs


async def failed_then_retried() -> dict[str, tuple[list[HistoryEntry], bytes]]:
    """A compensation that fails until the saga is ``failed``; an operator's retry
    once the service is back. (No breakers: they would park the undo instead.)"""
    clock, ledger, outages = VirtualClock(), Ledger(), Outages()
    services = build_services(ledger, clock, outages)
    async with Harness([saga], services, clock=clock, breakers=False) as h:
        await h.start(saga.name, order("failed", card="declined"), saga_id="failed")
        outages.down["inventory"] = "failing"
        state = await h.run_until_done("failed")
        assert state.status == "failed"
        del outages.down["inventory"]
        await h.retry("failed")
        assert (await h.run_until_done("failed")).status == "compensated"
        return {"failed": (list(await h.history("failed")), await stored(h, "failed"))}


Runs = dict[str, tuple[list[HistoryEntry], bytes]]


@pytest.fixture(scope="module")
def runs() -> Runs:
    # Run once for the module, on a loop of its own: replay itself is synchronous.
    return asyncio.run(mixed_run())


def replayed(runs: Runs, definition: Any) -> dict[str, Replayed]:
    return {sid: replay(definition, entries, state) for sid, (entries, state) in runs.items()}


def test_every_saga_of_a_mixed_run_replays_to_its_recorded_state(
    runs: Runs,
) -> None:
    statuses = {sid: msgspec.json.decode(state)["status"] for sid, (_, state) in runs.items()}
    assert set(statuses.values()) == {"completed", "compensated", "cancelled"}
    every = {k for entries, _ in runs.values() for k in kinds(entries)}
    assert every >= {
        "Start",
        "StepCompleted",
        "StepFailed",
        "TimerFired",
        "SignalReceived",
        "CancelRequested",
        "PauseRequested",
        "ResumeRequested",
        "RetryRequested",
        "ServiceRecovered",
    }
    # Inputs that changed nothing are replayed too: late replies, a refused cancel.
    assert any(not e.changed for entries, _ in runs.values() for e in entries)
    # The outage's sagas ran on a definition with other breakers: same decisions.
    results = replayed(runs, saga)
    assert {sid: r.divergence for sid, r in results.items()} == dict.fromkeys(runs)
    assert all(r.compatible and r.version == r.recorded_version == 1 for r in results.values())
    assert results["flaky"].inputs == len(runs["flaky"][0])


def test_entries_carry_time_and_version(
    runs: Runs,
) -> None:
    entries, _ = runs["approved"]
    assert all(e.version == 1 for e in entries)
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert entries[-1].at - entries[0].at >= timedelta(hours=1)


def test_a_changed_retry_policy_diverges_at_the_failure_it_decides_otherwise(
    runs: Runs,
) -> None:
    results = replayed(runs, no_charge_retry_v2)
    # Sagas whose charge never failed retryably replay the same on v2.
    assert results["completed"].compatible and results["declined"].compatible
    flaky = results["flaky"]
    assert (flaky.compatible, flaky.recorded_version, flaky.version) == (False, 1, 2)
    entries, _ = runs["flaky"]
    failure = next(i for i, e in enumerate(entries) if _inp(e).get("type") == "StepFailed")
    assert flaky.divergence is not None
    assert flaky.divergence.index == failure
    assert flaky.divergence.input == "charge #1 failed: GatewayTimeout"
    assert flaky.divergence.at == entries[failure].at
    assert flaky.divergence.what == "status: recorded running, replayed compensating"


def test_a_compatible_new_version_replays_every_saga(
    runs: Runs,
) -> None:
    results = replayed(runs, compatible_v2)
    assert all(r.compatible and r.version == 2 for r in results.values())


def test_a_changed_command_diverges_where_the_command_is_sent(
    runs: Runs,
) -> None:
    result = replay(double_charge_v1, *runs["completed"])
    assert result.divergence is not None
    entries, _ = runs["completed"]
    assert describe_input(_inp(entries[result.divergence.index])) == "reserve #1 completed"
    # (after the effect that cancels the reserve's timeout)
    assert result.divergence.what == "effect 2 (action charge #1) differs in payload.amount_cents"
    assert result.divergence.input == "reserve #1 completed"


def test_a_changed_merge_diverges_in_the_final_state(
    runs: Runs,
) -> None:
    other = order_saga(charge_merge=lambda o, r: replace(o, charge_id="other"))
    result = replay(other, *runs["completed"])
    assert result.divergence is not None
    assert result.divergence.what == "the final state differs from the stored one in data.charge_id"
    assert result.divergence.recorded == {"data.charge_id": "ch-completed"}
    assert result.divergence.replayed == {"data.charge_id": "other"}


def _inp(entry: HistoryEntry) -> dict[str, Any]:
    found: dict[str, Any] = msgspec.json.decode(entry.input)
    return found
