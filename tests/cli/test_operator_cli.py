"""``saga dead-letters`` and ``saga stuck`` as an operator types them, against the real
RabbitMQ and Redis: ``--json`` for every read, one line and an exit code for every
mistake (an unknown message id or queue, a bad duration, a purge without --yes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from servers import AMQP_URL, REDIS_URL, connect_rabbit, connect_redis, drop_namespace, namespace

from coordinator.adapters.rabbitmq import RabbitDeadLetters
from coordinator.cli._stuck import describe_wait, parse_duration
from coordinator.client import Wait
from coordinator.examples.orders import saga as order_saga
from coordinator.ports import Delivery
from coordinator.service import record_deployment

BIN = Path(sys.executable).parent
QUEUES = ("coordinator.events", "payments.commands")


class Namespace:
    """A namespace whose coordinators recorded the order saga, with dead letters."""

    def __init__(self) -> None:
        self.ns = namespace()

    def saga(self, *args: str) -> subprocess.CompletedProcess[str]:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
            "SAGA_NAMESPACE": self.ns,
            "SAGA_AMQP_URL": AMQP_URL,
            "SAGA_REDIS_URL": REDIS_URL,
        }
        return subprocess.run(
            [str(BIN / "saga"), *args], env=environ, capture_output=True, text=True, timeout=60
        )

    def json(self, *args: str) -> Any:
        done = self.saga(*args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    async def park(self) -> None:
        """Two bad messages on the events queue, one on payments', as consumers park them."""
        redis = await connect_redis()
        await record_deployment(redis, self.ns, [order_saga])
        await redis.aclose()
        transport = await connect_rabbit(self.ns)

        async def park(delivery: Delivery) -> None:
            await delivery.dead_letter("malformed_json", f"cannot read {delivery.message_id}")

        await transport.subscribe("coordinator.events", "events", "#", park)
        await transport.subscribe("payments.commands", "commands", "payments.*", park)
        for n in range(2):
            await transport.publish("events", "x.StartSaga", b"{no", message_id=f"e-{n}")
        await transport.publish("commands", "payments.Charge", b"{no", message_id="p-0")
        dead = RabbitDeadLetters(transport)
        async with asyncio.timeout(10):
            while sum([len(await dead.list(q)) for q in QUEUES]) < 3:
                await asyncio.sleep(0.05)
        await transport.close()

    async def drop(self) -> None:
        transport = await connect_rabbit(self.ns)
        queues = [f"{s}.commands" for s in ("inventory", "payments", "loyalty", "shipping")]
        await transport.delete_namespace(["coordinator.events", *queues])
        await transport.close()
        redis = await connect_redis()
        await drop_namespace(redis, self.ns)
        await redis.aclose()


@pytest.fixture
def space() -> Iterator[Namespace]:
    made = Namespace()
    asyncio.run(made.park())
    yield made
    asyncio.run(made.drop())


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line


def test_list_shows_the_dead_letters_of_every_queue_with_their_reasons(space: Namespace) -> None:
    listed = space.json("dead-letters", "list")
    assert [(d["queue"], d["message_id"], d["reason"], d["detail"]) for d in listed] == [
        ("coordinator.events", "e-0", "malformed_json", "cannot read e-0"),
        ("coordinator.events", "e-1", "malformed_json", "cannot read e-1"),
        ("payments.commands", "p-0", "malformed_json", "cannot read p-0"),
    ]
    assert listed[2]["exchange"] == "commands" and listed[2]["routing_key"] == "payments.Charge"
    assert listed[2]["body"] == "{no" and listed[2]["dead_lettered_at"]
    table = space.saga("dead-letters", "list", "--queue", "payments.commands")
    assert table.returncode == 0 and "p-0" in table.stdout and "e-0" not in table.stdout


def test_show_one_and_the_mistakes_about_ids_and_queues(space: Namespace) -> None:
    [shown] = space.json("dead-letters", "show", "e-1")
    assert (shown["queue"], shown["reason"]) == ("coordinator.events", "malformed_json")
    one_line(space.saga("dead-letters", "show", "nope"), 1, "no dead letter", "'nope'")
    one_line(
        space.saga("dead-letters", "list", "--queue", "nope.commands"),
        1,
        "no queue 'nope.commands'",
    )


def test_redrive_by_id_then_purge_with_yes_only(space: Namespace) -> None:
    # The consumers are gone: a moved-back letter waits in its queue.
    moved = space.json("dead-letters", "redrive", "--id", "e-0")
    assert [m["message_id"] for m in moved] == ["e-0"]
    assert [d["message_id"] for d in space.json("dead-letters", "list")] == ["e-1", "p-0"]
    one_line(
        space.saga("dead-letters", "redrive", "--id", "gone"), 1, "'gone'", "nothing was moved"
    )

    one_line(space.saga("dead-letters", "purge"), 2, "--yes")
    assert len(space.json("dead-letters", "list")) == 2
    dropped = space.json("dead-letters", "purge", "--yes")
    assert dropped["coordinator.events"] == 1 and dropped["payments.commands"] == 1
    assert space.json("dead-letters", "list") == []


def test_stuck_reads_json_and_refuses_a_bad_duration(space: Namespace) -> None:
    assert space.json("stuck", "--older-than", "1h30m") == []
    one_line(space.saga("stuck", "--older-than", "ten minutes"), 2, "'ten minutes'", "duration")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h30m", 5400), ("90s", 90), ("2d", 172800), ("600", 600), ("PT10M", 600)],
)
def test_durations_an_operator_writes(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "10x", "m10", "-5", "ten"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


def test_a_signal_no_coordinator_recorded_is_shown_as_unknown() -> None:
    assert describe_wait(Wait(what="signal", step="hold")) == "signal ? for hold since ?"
    known = describe_wait(Wait(what="signal", step="hold", signal="release"))
    assert known == "signal 'release' for hold since ?"


def test_a_paused_saga_says_who_must_resume_it() -> None:
    line = describe_wait(Wait(what="resume", by="alice"))
    assert line == "an operator to resume it (paused by alice since ?)"


def test_redrive_shows_progress_on_stderr_when_asked_or_on_a_terminal(space: Namespace) -> None:
    quiet = space.saga("dead-letters", "redrive", "--id", "e-0")  # stderr is no terminal here
    assert quiet.returncode == 0 and quiet.stderr == ""
    shown = space.saga("dead-letters", "redrive", "--progress")
    assert shown.returncode == 0, shown.stderr
    # A counter line when the total is known, then one after each queue.
    assert shown.stderr.splitlines() == [
        "moving dead letters back: 0/2",
        "moving dead letters back: 1/2",
        "moving dead letters back: 2/2",
    ]
    assert "2 dead letter(s) moved back" in shown.stdout
