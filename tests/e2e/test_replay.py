"""History, replay and versions end to end, on the shared RabbitMQ and Redis with
coordinator replicas and participants as processes, at a small scale.

A mixed run replays to every saga's recorded decisions and stored state (``saga
replay --all``), a definition that retries less is reported incompatible at the
first input it decides otherwise, ``saga export`` writes what ended; and a
message for a saga on a version no running replica has waits in the dead letters
until a coordinator with that version starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from procs import SAGA, Deployment, poll
from workload import SAGA as NAME
from workload import Order, Run, make_orders

from coordinator import Coordinator
from coordinator.adapters.memory import SystemClock
from coordinator.adapters.redis import RedisSagaStore, connect_redis
from coordinator.examples.orders import saga as order_saga
from coordinator.service import connect_rabbit, open_client

ORDERS = "coordinator.examples.orders:saga"
V2 = "order_versions:compatible_v2"
VERSIONS = Path(__file__).resolve().parents[1] / "replay"  # order_versions.py


def with_versions(d: Deployment) -> dict[str, str]:
    """The deployment's environment, with ``order_versions`` importable."""
    return {"PYTHONPATH": os.pathsep.join([str(VERSIONS), d.env["PYTHONPATH"]])}


async def saga_cli(d: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**d.env, **with_versions(d)}
    return await asyncio.to_thread(
        subprocess.run, [SAGA, *args], env=env, capture_output=True, text=True, timeout=120
    )


async def cancel_while_waiting(run: Run, saga_id: str) -> None:
    """Start a large order and cancel it while it waits for its approval."""
    client = run.client
    large = Order(saga_id, "large").input()
    await client.start(NAME, large, saga_id)

    async def waiting() -> bool | None:
        state = await client.get(saga_id)
        steps = (state or {}).get("steps", {})
        return True if steps.get("approval", {}).get("status") == "waiting" else None

    await poll(f"{saga_id} to wait for its approval", waiting, timeout=60)
    await client.cancel(saga_id, "the customer changed their mind")

    async def ended() -> bool | None:
        state = await client.get(saga_id)
        return True if state and state["status"] == "cancelled" else None

    await poll(f"{saga_id} to be cancelled", ended, timeout=60)


@pytest.mark.timeout(300)
async def test_a_mixed_run_replays_as_recorded_and_a_changed_version_does_not(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy()
    d.coordinator()
    d.coordinator()
    d.participant()
    await d.wait_ready(coordinators=2, participants=1)
    since = datetime.now(UTC) - timedelta(seconds=1)
    mix = {"plain": 6, "declined": 2, "flaky": 3, "large": 2, "out_of_stock": 1, "slow": 1}
    orders = make_orders(mix, prefix="replay")
    async with open_client(d.settings) as client:
        run = Run(client, orders)
        await run.start_all()
        await cancel_while_waiting(run, "replay-cancelled")
        await run.wait_all(timeout=200)
    every = {o.id for o in orders} | {"replay-cancelled"}

    done = await saga_cli(d, "replay", "--all", "--name", NAME, "--saga", ORDERS, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout)
    assert {r["saga_id"] for r in results} == every
    assert [r for r in results if not r["compatible"]] == []
    assert {(r["recorded_version"], r["version"]) for r in results} == {(1, 1)}

    # A version that gives up on the first failed charge: exactly the flaky cards
    # diverge, at their first charge's failure.
    retry_less = "order_versions:no_charge_retry_v2"
    done = await saga_cli(d, "replay", "--all", "--name", NAME, "--saga", retry_less)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{len(every)} sagas of {NAME} replayed on v2: {len(every) - 3} as recorded" in (
        done.stdout
    )
    done = await saga_cli(
        d,
        "replay",
        "--all",
        "--name",
        NAME,
        "--saga",
        "order_versions:no_charge_retry_v2",
        "--json",
    )
    diverged = {
        r["saga_id"]: r["divergence"] for r in json.loads(done.stdout) if not r["compatible"]
    }
    assert set(diverged) == {o.id for o in orders if o.kind == "flaky"}
    for divergence in diverged.values():
        assert divergence["input"] == "charge #1 failed: GatewayTimeout"
        assert divergence["what"] == "status: recorded running, replayed compensating"
    flaky = next(iter(diverged))
    done = await saga_cli(d, "replay", flaky, "--saga", retry_less)
    assert done.returncode == 1
    assert "first diverging input: #" in done.stdout
    assert "charge #1 failed: GatewayTimeout" in done.stdout

    done = await saga_cli(d, "history", "replay-cancelled", "--json")
    entries = json.loads(done.stdout)
    assert {e["version"] for e in entries} == {1}
    assert any(e["input"]["type"] == "CancelRequested" for e in entries)

    done = await saga_cli(d, "export", "--since", since.isoformat())
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["saga_id"] for line in lines} == every
    assert all(
        line["state"]["status"] in {"completed", "compensated", "cancelled"} for line in lines
    )
    assert all(line["history"][0]["input"]["type"] == "Start" for line in lines)
    assert f"{len(every)} sagas exported" in done.stderr


@pytest.mark.timeout(300)
async def test_an_unknown_version_waits_in_the_dead_letters_for_a_coordinator_with_it(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy()
    # A replica with version 2 only: no saga was in flight when it started.
    newer = d.coordinator(sagas=[V2], env=with_versions(d))
    d.participant()
    await d.wait_ready(coordinators=1, participants=1)

    # A replica still on version 1 starts three sagas (in this process: it takes
    # no events, so every reply goes to the newer replica).
    transport = await connect_rabbit(d.settings)
    redis = connect_redis(d.redis_url)
    try:
        store = RedisSagaStore(redis, namespace=d.ns)
        older = Coordinator([order_saga], transport=transport, store=store, clock=SystemClock())
        ids = [f"v1-{i}" for i in range(3)]
        for saga_id in ids:
            await older.start_saga(NAME, saga_id, Order(saga_id, "plain").input())
    finally:
        await transport.close()
        await redis.aclose()

    async def parked() -> list[Any] | None:
        letters = (await d.dead_letters())["coordinator.events"]
        return letters if len(letters) == len(ids) else None

    letters = await poll("the replies to be dead-lettered", parked, timeout=60)
    assert {letter.reason for letter in letters} == {"unknown_version"}
    assert all("'order.place' v1 is not loaded here (loaded: v2)" in x.detail for x in letters)

    # A coordinator without version 1 refuses to start while they are in flight.
    done = await saga_cli(d, "run", "--saga", V2, "--wait-for-servers", "0")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: sagas are in flight on definitions this coordinator was not")
    assert "order.place v1 (3 sagas)" in line

    # One with both versions starts, moves the letters back and finishes the sagas.
    await newer.stop()
    d.coordinator(sagas=[ORDERS, V2], env=with_versions(d))
    async with open_client(d.settings) as client:

        async def completed() -> bool | None:
            states = [await client.state(saga_id) for saga_id in ids]
            return True if all(s and s.status == "completed" for s in states) else None

        await poll("the version 1 sagas to complete", completed, timeout=90)
        for saga_id in ids:
            state = await client.state(saga_id)
            assert state is not None and state.version == 1
            assert {e.version for e in await client.history(saga_id)} == {1}
    assert (await d.dead_letters())["coordinator.events"] == []
