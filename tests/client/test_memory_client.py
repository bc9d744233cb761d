"""The operator's client on the ports: the same ``SagaClient`` the CLI uses, here on
the memory transport and store of a ``Harness``, with no server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest

from coordinator import RequestRefusedError, SagaClient, SagaState
from coordinator.client import cancel_checked, signal_checked, start_checked
from coordinator.examples.orders import Ledger, build_services, saga
from coordinator.testing import Harness, VirtualClock

BIG = 500_000  # over the approval threshold: the saga waits for a signal


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        yield h


@pytest.fixture
def client(harness: Harness) -> SagaClient:
    return SagaClient(harness.transport, harness.store, namespace="memory")


def order(order_id: str, total_cents: int = 1_000) -> dict[str, object]:
    return {"order_id": order_id, "lines": [], "total_cents": total_cents}


async def test_start_then_show_and_history(harness: Harness, client: SagaClient) -> None:
    async def settle(_seconds: float) -> None:
        await harness.settle()

    saga_id = await start_checked(
        client, saga.name, order("m1"), "m1", accept_timeout=5, sleep=settle
    )
    assert saga_id == "m1"
    await harness.run_until_done("m1")

    state = await client.state("m1")
    assert isinstance(state, SagaState)
    assert state.status == "completed"
    assert state.steps["reserve"].status == "succeeded"
    assert state.data["tracking_number"] == "trk-m1", "data as plain JSON values"

    shown = await client.get("m1")
    assert shown is not None
    assert shown["status"] == "completed"
    assert shown["seen_signals"] == [], "fields at their defaults are shown too"
    assert shown["steps"]["points"]["attempt"] == 0

    [first, *_rest] = await client.history("m1")
    assert msgspec.json.decode(first.input)["type"] == "Start"
    assert first.input_id == "start:m1"
    assert [s.saga_id for s in await client.find(status="completed")] == ["m1"]
    assert await client.state("nope") is None


async def test_signal_and_cancel_are_taken(harness: Harness, client: SagaClient) -> None:
    async def settle(_seconds: float) -> None:
        await harness.settle()

    for saga_id in ("big1", "big2"):
        await start_checked(
            client, saga.name, order(saga_id, BIG), saga_id, accept_timeout=5, sleep=settle
        )
        await harness.advance(timedelta(seconds=1))
        waiting = await client.state(saga_id)
        assert waiting is not None
        assert waiting.steps["approval"].status == "waiting"

    await signal_checked(
        client, "big1", "approval", {"approved": True, "by": "ops"}, accept_timeout=5, sleep=settle
    )
    done = await harness.run_until_done("big1")
    assert (done.status, done.data.approved_by) == ("completed", "ops")

    await cancel_checked(client, "big2", "customer called", accept_timeout=5, sleep=settle)
    cancelled = await harness.run_until_done("big2")
    assert (cancelled.status, cancelled.reason) == ("cancelled", "customer called")
    with pytest.raises(RequestRefusedError, match="big2 is cancelled: it takes no cancel"):
        await cancel_checked(client, "big2", "again", accept_timeout=5, sleep=settle)
