"""Replay and export through the operator's client, on the in-memory adapters:
which definition a saga replays against, and what an export writes."""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from coordinator import RequestRefusedError, SagaClient
from coordinator.client import export_finished, replay_saga, saga_ids
from coordinator.client._replay import pick_definition
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Line
from coordinator.testing import Harness, VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replay"))
from order_versions import compatible_v2, no_charge_retry_v2, order_saga

BOOK = [Line(sku="book", quantity=1)]


def test_a_saga_replays_on_its_own_version_when_given_else_the_newest_of_its_name() -> None:
    v3 = order_saga(3)
    assert pick_definition([compatible_v2, saga, v3], "order.place", 1) is saga
    assert pick_definition([compatible_v2, v3], "order.place", 1) is v3
    assert pick_definition([saga], "order.place", 2) is saga
    assert pick_definition([saga], "refund", 1) is None


async def test_replay_export_and_ids_through_the_client() -> None:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        client = SagaClient(h.transport, h.store)
        since = clock.now()
        for saga_id, card in (("plain", "visa"), ("flaky", "flaky")):
            order = Order(order_id=saga_id, lines=BOOK, total_cents=100, card=card)
            await h.start(saga.name, order, saga_id=saga_id)
            await h.run_until_done(saga_id)
        waiting = Order(order_id="big", lines=BOOK, total_cents=500_000)
        await h.start(saga.name, waiting, saga_id="big")
        await h.advance(timedelta(minutes=1))

        assert sorted(await saga_ids(client, saga.name)) == ["big", "flaky", "plain"]
        assert await saga_ids(client, saga.name, "running") == ["big"]
        for saga_id in ("plain", "flaky", "big"):
            assert (await replay_saga(client, saga_id, [saga])).compatible
        flaky = await replay_saga(client, "flaky", [saga, no_charge_retry_v2])
        assert flaky.compatible and flaky.version == 1  # its own version was given
        flaky = await replay_saga(client, "flaky", [no_charge_retry_v2])
        assert flaky.divergence is not None and flaky.version == 2
        with pytest.raises(RequestRefusedError, match="no saga with id nope"):
            await replay_saga(client, "nope", [saga])
        other = dataclasses.replace(order_saga(), name="refund")
        with pytest.raises(RequestRefusedError, match="no definition given is called"):
            await replay_saga(client, "plain", [other])

        exported = [line async for line in export_finished(client, since)]
        assert [e["saga_id"] for e in exported] == ["plain", "flaky"]  # ended, oldest first
        plain = exported[0]
        assert plain["state"]["status"] == "completed"
        assert plain["state"]["paused"] is False  # every field, defaults too
        assert plain["history"][0]["input"]["type"] == "Start"
        assert all(e["version"] == 1 for e in plain["history"])
        msgspec.json.encode(exported)  # JSON values only
        later = clock.now() + timedelta(seconds=1)
        assert [line async for line in export_finished(client, later)] == []
        assert [e["saga_id"] async for e in export_finished(client, since, names=["x"])] == []
