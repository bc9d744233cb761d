"""An operator's repair tools end to end: ``saga run`` and ``saga participant`` as real
processes on the shared RabbitMQ and Redis, driven by ``saga retry``, ``saga pause``
and ``saga resume`` as an operator types them.

The saga and its participant are defined here, for the processes to load by name
(``test_retry_pause:saga``, ``test_retry_pause:services``; this directory is on
their PYTHONPATH): a vault whose undo of ``put`` fails while a flag file exists
(the service is broken, then fixed), and whose ``put`` can be held until a
release file appears (so the test decides when its reply reaches the saga).
Every execution is written to a SQLite ledger the test reads. The test-only
imports are inside the tests: the processes import this module without them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from coordinator import Retry, Saga
from participants import Context, Failure, Service

VAULT_DIR = "VAULT_DIR"  # where the ledger and the flag files are
SERVICE = "vault"


class Box(msgspec.Struct, frozen=True):
    id: str
    hold: bool = False  # ``put`` answers only once the release file exists
    deny: bool = False  # ``ship``, the pivot, refuses: what was done is compensated


class Put(msgspec.Struct):
    id: str
    hold: bool


class Take(msgspec.Struct):
    id: str


class Label(msgspec.Struct):
    id: str


class Unlabel(msgspec.Struct):
    id: str


class Ship(msgspec.Struct):
    id: str
    deny: bool


_box: Saga[Box] = Saga(
    "vault.box",
    data=Box,
    compensation_retry=Retry(
        attempts=3, backoff=timedelta(seconds=0.2), max_backoff=timedelta(seconds=1)
    ),
)
saga = _box.define(
    _box.step(
        "put",
        service=SERVICE,
        send=lambda b: Put(id=b.id, hold=b.hold),
        undo=lambda b: Take(id=b.id),
    ),
    _box.step(
        "label", service=SERVICE, send=lambda b: Label(id=b.id), undo=lambda b: Unlabel(id=b.id)
    ),
    _box.step("ship", service=SERVICE, send=lambda b: Ship(id=b.id, deny=b.deny), pivot=True),
)


def _ledger(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / "ledger.sqlite3", isolation_level=None, timeout=10)
    db.execute("CREATE TABLE IF NOT EXISTS runs (effect TEXT, box TEXT)")
    return db


def services() -> list[Service]:
    folder = Path(os.environ[VAULT_DIR])
    db = _ledger(folder)
    vault = Service(SERVICE)

    def record(effect: str, box: str) -> None:
        db.execute("INSERT INTO runs VALUES (?, ?)", (effect, box))

    @vault.handles(Put)
    async def put(cmd: Put, ctx: Context) -> None:
        if cmd.hold:
            record("put-held", cmd.id)
            release = folder / f"release-{cmd.id}"
            deadline = time.monotonic() + 120
            while not release.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        record("put", cmd.id)

    @vault.handles(Take)
    async def take(cmd: Take, ctx: Context) -> None:
        if (folder / "jammed").exists():
            record("take-jammed", cmd.id)
            raise Failure("VaultJammed", "the vault door is jammed")
        record("take", cmd.id)

    @vault.handles(Label)
    async def label(cmd: Label, ctx: Context) -> None:
        record("label", cmd.id)

    @vault.handles(Unlabel)
    async def unlabel(cmd: Unlabel, ctx: Context) -> None:
        record("unlabel", cmd.id)

    @vault.handles(Ship)
    async def ship(cmd: Ship, ctx: Context) -> None:
        if cmd.deny:
            raise Failure("ShippingDenied", "no carrier takes it", retryable=False)
        record("ship", cmd.id)

    return [vault]


# -- the tests ----------------------------------------------------------------------------


class Vault:
    """A deployment of the vault saga and its participant, with the operator's CLI."""

    def __init__(self, d: Any, folder: Path) -> None:
        self.d = d
        self.folder = folder

    def runs(self, box: str) -> Counter[str]:
        rows = _ledger(self.folder).execute("SELECT effect FROM runs WHERE box = ?", (box,))
        return Counter(effect for (effect,) in rows)

    async def saga_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        from procs import SAGA

        return await asyncio.to_thread(
            subprocess.run,
            [SAGA, *args],
            env=self.d.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def operator(self, *args: str) -> str:
        done = await self.saga_cli(*args)
        assert done.returncode == 0, f"saga {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout


async def deploy_vault(deploy: Callable[..., Any], tmp_path: Path) -> Vault:
    from procs import poll, queue_states

    folder = tmp_path / "vault"
    folder.mkdir()
    d = deploy(env={VAULT_DIR: str(folder)}, saga="test_retry_pause:saga")
    d.coordinator()
    d.participant(services="test_retry_pause:services")
    queues = [f"{d.ns}.coordinator.events", f"{d.ns}.{SERVICE}.commands"]

    async def consumed() -> bool | None:
        states = await queue_states(d.amqp_url, queues)
        return True if all(s is not None and s[1] >= 1 for s in states.values()) else None

    await poll("the coordinator and the vault to consume", consumed, timeout=60)
    return Vault(d, folder)


async def drop_vault_queue(vault: Vault) -> None:
    """``Deployment.cleanup`` deletes the order example's queues; this one is ours."""
    import aio_pika

    await vault.d.stop_all()
    connection = await aio_pika.connect(vault.d.amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{vault.d.ns}.{SERVICE}.commands")


@pytest.mark.timeout(180)
async def test_a_failed_compensation_is_retried_once_the_participant_is_fixed(
    deploy: Callable[..., Any], tmp_path: Path
) -> None:
    from procs import poll

    from coordinator.client import start_checked
    from coordinator.service import open_client

    vault = await deploy_vault(deploy, tmp_path)
    try:
        (vault.folder / "jammed").touch()
        async with open_client(vault.d.settings) as client:
            await start_checked(
                client, "vault.box", {"id": "r1", "deny": True}, "r1", accept_timeout=30
            )

            async def ended(want: str) -> Any:
                state = await client.state("r1")
                return state if state is not None and state.status == want else None

            failed = await poll("r1 to fail", lambda: ended("failed"), timeout=60)
            assert failed.reason.startswith("compensation of 'put' failed")
            assert "VaultJammed" in failed.reason
            history = await client.history("r1")
            assert history[-1].status_after == "failed"
            assert failed.reason in history[-1].note
            # Label was undone; the undo of put was tried as often as the cap allows.
            assert vault.runs("r1") == Counter(
                {"put": 1, "label": 1, "unlabel": 1, "take-jammed": 3}
            )

            (vault.folder / "jammed").unlink()  # the participant is fixed
            said = await vault.operator("retry", "r1", "--by", "tester")
            assert said.startswith("retry taken by r1: operator retry of compensation: put")
            await poll("r1 to be compensated", lambda: ended("compensated"), timeout=60)
            # Each undo exactly once: put's after the retry, label's not again.
            assert vault.runs("r1") == Counter(
                {"put": 1, "label": 1, "unlabel": 1, "take-jammed": 3, "take": 1}
            )
            again = await vault.saga_cli("retry", "r1")
            assert again.returncode == 1
            assert again.stderr.strip() == (
                "error: saga r1 refused the retry: saga is compensated: "
                "it has no failed compensation to retry"
            )
    finally:
        await drop_vault_queue(vault)


@pytest.mark.timeout(180)
async def test_a_paused_saga_records_a_reply_and_sends_nothing_until_resumed(
    deploy: Callable[..., Any], tmp_path: Path
) -> None:
    from procs import poll

    from coordinator.client import start_checked
    from coordinator.service import open_client

    vault = await deploy_vault(deploy, tmp_path)
    try:
        async with open_client(vault.d.settings) as client:
            await start_checked(
                client, "vault.box", {"id": "p1", "hold": True}, "p1", accept_timeout=30
            )
            await poll(
                "the participant to hold put",
                lambda: _true(vault.runs("p1")["put-held"] == 1),
                timeout=30,
            )
            said = await vault.operator("pause", "p1", "--by", "tester")
            assert said.startswith("p1 paused")
            paused_at = len(await client.history("p1"))
            (vault.folder / "release-p1").touch()  # the reply goes out now

            async def held() -> Any:
                entries = await client.history("p1")
                return entries if entries[-1].note == "saga paused: held until resumed" else None

            entries = await poll("the reply to be recorded", held, timeout=30)
            reply = msgspec.json.decode(entries[-1].input)
            assert (reply["type"], reply["step"]) == ("StepCompleted", "put")
            state = await client.state("p1")
            assert state is not None and state.paused and len(state.held) == 1
            assert state.steps["put"].status == "dispatched"
            assert state.steps["label"].status == "pending"
            # Nothing was sent since the pause: no transition asked for a command.
            assert all(bytes(e.effects) == b"[]" for e in entries[paused_at - 1 :])
            assert vault.runs("p1") == Counter({"put-held": 1, "put": 1})

            said = await vault.operator("resume", "p1", "--by", "tester")
            assert "resumed by tester; 1 input held while paused" in said

            async def completed() -> Any:
                state = await client.state("p1")
                return state if state is not None and state.status == "completed" else None

            await poll("p1 to complete", completed, timeout=60)
            assert vault.runs("p1") == Counter({"put-held": 1, "put": 1, "label": 1, "ship": 1})
    finally:
        await drop_vault_queue(vault)


async def _true(value: bool) -> bool | None:
    return True if value else None
