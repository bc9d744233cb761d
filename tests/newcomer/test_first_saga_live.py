"""A newcomer's first saga on the real servers: the commands of the README that
``saga init`` writes, and the README's "From Python" block, run as written
against a coordinator and participants started as processes, each test in its
own namespace."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, namespace, unavailable

from coordinator.adapters.rabbitmq import RabbitTransport

BIN = Path(sys.executable).parent
README = Path(__file__).parents[2] / "README.md"


class Deployment:
    """``saga`` processes in one namespace, run from ``cwd`` (where a user's package is)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            **os.environ,
            "SAGA_NAMESPACE": namespace(),
            "SAGA_AMQP_URL": AMQP_URL,
            "SAGA_REDIS_URL": REDIS_URL,
            "SAGA_HTTP": "127.0.0.1:0",
            "ORDERS_LEDGER": str(cwd / "ledger.sqlite3"),
        }
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *args: str, ready: str) -> None:
        log = self.cwd / f"{args[0]}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "saga"), *args],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, log))
        deadline = time.monotonic() + 30
        # The process says when it is up only in its log.
        while ready not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"saga {args[0]} did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=90
        )
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
        return done

    def stop(self, services: tuple[str, ...]) -> list[int]:
        for proc, _log in self.procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc, _log in self.procs]
        asyncio.run(_delete_namespace(self.env["SAGA_NAMESPACE"], services))
        return codes


async def _delete_namespace(ns: str, services: tuple[str, ...]) -> None:
    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=f"{ns}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    transport = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    await transport.delete_namespace(["coordinator.events", *(f"{s}.commands" for s in services)])
    await transport.close()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    for port, what in ((5672, "RabbitMQ"), (6379, "Redis")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            unavailable(what, exc)
    yield Deployment(tmp_path)


def sh_commands(readme: str) -> list[str]:
    """The command lines of the README's ``sh`` blocks, comments dropped."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```$", readme, re.M | re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip().rstrip("&").strip()
            if command:
                lines.append(command)
    return lines


@pytest.mark.timeout(180)
def test_the_init_readme_commands_run_a_saga_on_the_servers(deployment: Deployment) -> None:
    d = deployment
    d.run(str(BIN / "saga"), "init", "booking")
    commands = sh_commands((d.cwd / "booking" / "README.md").read_text())
    run, participant, start = (
        next(c for c in commands if c.startswith(f"saga {word} "))
        for word in ("run", "participant", "start")
    )
    try:
        d.spawn(*run.split()[1:], ready="coordinator running")
        d.spawn(*participant.split()[1:], ready="participants running")
        # The README's JSON is in single quotes: split as the shell would.
        started = d.run(str(BIN / "saga"), *shlex.split(start)[1:], "--json")
        state = json.loads(started.stdout)
        assert state["status"] == "completed"
        assert state["data"]["charge_id"] == "ch-b-1"
    finally:
        assert d.stop(("seats", "payments")) == [0, 0]


@pytest.mark.timeout(180)
def test_the_readme_python_client_block_runs_as_written(deployment: Deployment) -> None:
    d = deployment
    section = README.read_text().split("### From Python\n", 1)[1]
    (block,) = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)[:1]
    try:
        d.spawn(
            "participant",
            "coordinator.examples.orders.worker:services",
            ready="participants running",
        )
        d.spawn("run", "--saga", "coordinator.examples.orders:saga", ready="coordinator running")
        done = d.run(sys.executable, "-c", block)
        first = done.stdout.splitlines()[0]
        assert first.startswith("completed "), done.stdout
        assert "'tracking_number': 'trk-A-1'" in first
        assert "start" in done.stdout  # the history's first entry
    finally:
        assert d.stop(("inventory", "payments", "loyalty", "shipping")) == [0, 0]
