"""``saga replay``, ``saga export`` and ``saga run``'s version check at the command
line: each mistake is one line with its exit code, and a coordinator without a
version sagas are in flight on refuses to start, naming it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from servers import AMQP_URL, connect_redis, drop_namespace, namespace
from test_cli_errors import one_line, saga

from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.core import Start, start
from coordinator.examples.orders import Order
from coordinator.examples.orders import saga as order_saga
from coordinator.examples.orders.messages import Line
from coordinator.ports import Commit
from coordinator.runtime._translate import history_entry

ORDERS = "coordinator.examples.orders:saga"
VERSIONS = Path(__file__).resolve().parents[1] / "replay"  # order_versions.py

USAGE = [
    (["replay", "s1"], ["--saga", "name the definitions to replay against"]),
    (["replay", "--saga", ORDERS], ["SAGA_ID", "give a SAGA_ID, or --all with --name"]),
    (["replay", "s1", "--all", "--saga", ORDERS], ["give a SAGA_ID, or --all"]),
    (["replay", "--all", "--saga", ORDERS], ["--name", "--all needs"]),
    (
        ["replay", "--all", "--name", "refund", "--saga", ORDERS],
        ["--saga", "no definition named 'refund' given (order.place@1)"],
    ),
    (["replay", "s1", "--status", "running", "--saga", ORDERS], ["only with --all"]),
    (["replay", "s1", "--saga", "nope:saga"], ["--saga", "cannot import"]),
    (["export", "--since", "yesterday"], ["--since", "not an ISO 8601 date"]),
    (["export"], ["Missing option '--since'"]),
]


@pytest.mark.parametrize(("args", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_a_usage_mistake_is_one_line_and_exit_code_2(args: list[str], words: list[str]) -> None:
    one_line(saga(*args), 2, *words)


def test_replaying_an_unknown_saga_is_one_line_and_exit_code_1() -> None:
    one_line(saga("replay", "nope", "--saga", ORDERS), 1, "no saga with id nope in namespace")


@pytest.fixture
async def in_flight() -> AsyncIterator[str]:
    """A namespace with two order sagas in flight on version 1, as a coordinator leaves them."""
    ns = namespace()
    redis = await connect_redis()
    store = RedisSagaStore(redis, namespace=ns)
    for saga_id in ("o-1", "o-2"):
        order = Order(order_id=saga_id, lines=[Line(sku="a", quantity=1)], total_cents=100)
        inp = Start(saga_id=saga_id, data=order, at=datetime.now(UTC))
        decision = start(order_saga, inp)
        result = await store.commit(
            Commit(
                saga_id=saga_id,
                name=order_saga.name,
                status=decision.state.status,
                expected_revision=-1,
                revision=decision.state.revision,
                state=msgspec.json.encode(decision.state),
                dedupe_id=f"start:{saga_id}",
                history=history_entry(decision.state.revision, inp, decision),
            )
        )
        assert result == "committed"
    yield ns
    await drop_namespace(redis, ns)
    await redis.aclose()
    transport = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    await transport.delete_namespace(["coordinator.events", "inventory.commands"])
    await transport.close()


def with_versions() -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(VERSIONS), os.environ.get("PYTHONPATH")]))
    }


async def test_run_without_a_version_in_flight_refuses_to_start_naming_it(in_flight: str) -> None:
    done = await asyncio.to_thread(
        saga,
        "run",
        "--saga",
        "order_versions:compatible_v2",
        "--wait-for-servers",
        "0",
        SAGA_NAMESPACE=in_flight,
        **with_versions(),
    )
    line = one_line(done, 2, "order.place v1 (2 sagas)", "in flight", "--saga")
    assert "order.place v2" not in line


async def test_replay_and_history_of_a_saga_in_flight(in_flight: str) -> None:
    env = {"SAGA_NAMESPACE": in_flight, **with_versions()}
    done = await asyncio.to_thread(saga, "replay", "o-1", "--saga", ORDERS, **env)
    assert done.returncode == 0, done.stderr
    assert "o-1 (order.place v1), 1 inputs: replays as recorded on order.place v1" in done.stdout
    done = await asyncio.to_thread(
        saga, "replay", "o-1", "--saga", "order_versions:compatible_v2", "--json", **env
    )
    found = json.loads(done.stdout)
    assert (found["compatible"], found["recorded_version"], found["version"]) == (True, 1, 2)
    done = await asyncio.to_thread(saga, "history", "o-1", "--json", **env)
    [entry] = json.loads(done.stdout)
    assert (entry["version"], entry["revision"], entry["input"]["type"]) == (1, 1, "Start")
    assert datetime.fromisoformat(entry["at"]) <= datetime.now(UTC)
    done = await asyncio.to_thread(saga, "history", "o-1", **env)
    assert done.returncode == 0, done.stderr
    assert "start" in done.stdout and "saga started" in done.stdout
    assert entry["at"][:10] in done.stdout  # the time of day, with its date
