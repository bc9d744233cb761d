"""The operator's CLI against a live deployment: coordinator and participants as
processes on the real RabbitMQ and Redis, each test in its own namespace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, namespace, unavailable

from coordinator.adapters.rabbitmq import RabbitTransport

BIN = Path(sys.executable).parent


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "SAGA_NAMESPACE": namespace(),
            "SAGA_AMQP_URL": AMQP_URL,
            "SAGA_REDIS_URL": REDIS_URL,
            "SAGA_TIMER_INTERVAL": "0.1",
            "SAGA_HTTP": "127.0.0.1:0",  # a free port each: the processes share the host
            "ORDERS_LEDGER": str(tmp / "ledger.sqlite3"),
        }
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *args: str, ready: str) -> None:
        """Start ``saga ARGS`` and wait until its log says ``ready``."""
        log = self.tmp / f"{args[0]}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "saga"), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append((proc, log))
        deadline = time.monotonic() + 30
        while ready not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"saga {args[0]} did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def saga(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "saga"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            pytest.fail(f"saga {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.saga(*args, "--json").stdout)

    def wait_for(self, saga_id: str, condition: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            done = self.saga("show", saga_id, "--json", check=False)
            if done.returncode == 0:
                state: dict[str, Any] = json.loads(done.stdout)
                steps = {n: s.get("status", "pending") for n, s in state["steps"].items()}
                if condition in (state["status"], *[f"{n}:{s}" for n, s in steps.items()]):
                    return state
            if time.monotonic() > deadline:
                pytest.fail(f"{saga_id} never reached {condition}: {done.stdout or done.stderr}")
            time.sleep(0.2)

    def stop(self) -> list[int]:
        for proc, _log in self.procs:
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc, log in self.procs:
            try:
                codes.append(proc.wait(timeout=15))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
                print(log.read_text())
        return codes


def _servers_up() -> None:
    import socket

    for host, port, what in (("127.0.0.1", 5672, "RabbitMQ"), ("127.0.0.1", 6379, "Redis")):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            unavailable(what, exc)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Deployment]:
    _servers_up()
    d = Deployment(tmp_path)
    d.spawn(
        "participant", "coordinator.examples.orders.worker:services", ready="participants running"
    )
    d.spawn("run", "--saga", "coordinator.examples.orders:saga", ready="coordinator running")
    yield d
    codes = d.stop()
    asyncio.run(_delete_namespace(d.env["SAGA_NAMESPACE"]))
    assert codes == [0, 0], "SIGTERM must drain and exit 0"


async def _delete_namespace(ns: str) -> None:
    """Its Redis keys, its queues and exchanges: a shared broker keeps nothing of a run."""
    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=f"{ns}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    transport = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    services = ("inventory", "payments", "loyalty", "shipping")
    await transport.delete_namespace(["coordinator.events", *(f"{s}.commands" for s in services)])
    await transport.close()


def order(order_id: str, **extra: object) -> str:
    return json.dumps({"order_id": order_id, "lines": [], "total_cents": 1_000, **extra})


@pytest.mark.timeout(180)
def test_start_wait_list_show_history(live: Deployment) -> None:
    done = live.json("start", "order.place", "--id", "c1", "--input", order("c1"), "--wait")
    assert done["status"] == "completed"
    assert done["data"]["tracking_number"] == "trk-c1"
    again = live.json("start", "order.place", "--id", "c1", "--input", order("c1"), "--wait")
    assert again["started_at"] == done["started_at"], "a second start reports the same saga"
    differs = live.saga(
        "start", "order.place", "--id", "c1", "--data", order("c1", total_cents=7), check=False
    )
    assert differs.returncode == 1, differs.stdout
    assert differs.stderr.strip() == (
        "error: saga c1 already exists; this input was ignored "
        "(it differs from the one it started with)"
    )
    ended = live.saga(
        "start",
        "order.place",
        "--id",
        "c2",
        "--input",
        order("c2", card="declined"),
        "--wait",
        "--json",
        check=False,
    )
    assert ended.returncode == 1, "--wait exits 0 only for completed"
    declined = json.loads(ended.stdout)
    assert declined["status"] == "compensated"
    assert "CardDeclined" in declined["reason"]
    assert ended.stderr.strip() == (
        "error: saga c2 ended compensated: charge: CardDeclined: the card was declined"
    )
    unknown = live.saga("start", "order.plaec", "--id", "c3", check=False)
    assert unknown.returncode == 1
    assert "no saga definition named 'order.plaec' (known: order.place)" in unknown.stderr
    unfit = live.saga(
        "start", "order.place", "--id", "c4", "--data", '{"order_id": 4}', check=False
    )
    assert unfit.returncode == 1
    assert "does not fit saga 'order.place'" in unfit.stderr and "$.order_id" in unfit.stderr

    listed = live.json("list")
    assert {s["saga_id"] for s in listed} == {"c1", "c2"}, "refused starts make no saga"
    assert [s["saga_id"] for s in live.json("list", "--status", "compensated")] == ["c2"]
    assert live.json("list", "--name", "nothing.like.it") == []

    shown = live.json("show", "c2")
    assert shown["steps"]["charge"]["status"] == "failed"
    assert shown["steps"]["reserve"]["status"] == "compensated"
    history = live.json("history", "c2")
    assert history[0]["input"]["type"] == "Start"
    assert history[-1]["note"].endswith(
        "saga compensated: charge: CardDeclined: the card was declined"
    )
    human = live.saga("show", "c2").stdout
    assert "compensated" in human
    assert "reserve" in human
    missing = live.saga("show", "no-such-saga", check=False)
    assert missing.returncode == 1
    assert "no saga" in missing.stderr


@pytest.mark.timeout(180)
def test_signal_approves_and_cancel_compensates(live: Deployment) -> None:
    big = order("big", total_cents=500_000)
    started = live.json("start", "order.place", "--id", "big", "--input", big)
    assert started == {"saga_id": "big"}
    live.wait_for("big", "approval:waiting")
    live.saga("signal", "big", "approval", "--data", '{"approved": true, "by": "ops"}')
    state = live.wait_for("big", "completed")
    assert state["data"]["approved_by"] == "ops"

    live.json("start", "order.place", "--id", "big2", "--input", order("big2", total_cents=500_000))
    live.wait_for("big2", "approval:waiting")
    live.saga("cancel", "big2", "--reason", "customer called")
    state = live.wait_for("big2", "cancelled")
    again = live.saga("cancel", "big2", check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: saga big2 is cancelled: it takes no cancel any more"
    assert state["reason"] == "customer called"
    assert state["steps"]["charge"]["status"] == "compensated"


def test_bad_input_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    d = Deployment(tmp_path)
    bad = d.saga("start", "order.place", "--input", "{not json", check=False)
    assert bad.returncode == 2
    assert "--data is not valid JSON" in bad.stderr


def test_topology_export_lists_queues_and_bindings(tmp_path: Path) -> None:
    d = Deployment(tmp_path)
    doc = json.loads(d.saga("topology", "--export", "--service", "inventory").stdout)
    ns = d.env["SAGA_NAMESPACE"]
    queues = {q["name"]: q for q in doc["queues"]}
    assert queues[f"{ns}.coordinator.events"]["arguments"]["x-queue-type"] == "quorum"
    assert f"{ns}.inventory.commands" in queues
    assert any(b["routing_key"] == "inventory.*" for b in doc["bindings"])
