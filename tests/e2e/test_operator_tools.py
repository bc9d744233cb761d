"""The operator's repair tools on a live deployment: ``saga run`` and ``saga
participant`` as processes on the shared RabbitMQ and Redis, and the ``saga`` command
line an operator types.

- Bad input of every kind is dead-lettered with its reason, and ``saga dead-letters
  list`` shows each one; redriving them all brings each one back with the same
  reason: nothing is lost, nothing goes round for ever.
- A start dead-lettered while its definition was not loaded is redriven once a
  coordinator that has it runs: the saga runs exactly once.
- ``saga stuck`` names the step a saga waits for when its participant is stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from procs import SAGA, Deployment, poll
from servers import connect_rabbit
from workload import ledger_rows

from contracts import DEFAULT_CODEC, Signal, StartSaga, routes

ORDER = {"order_id": "A-1", "lines": [], "total_cents": 4500}

# A definition without the order saga: starts of order.place are unknown to it.
OTHER_SAGA = """
import msgspec
from coordinator import Saga

class Note(msgspec.Struct):
    text: str = ""

_b = Saga("notes.keep", data=Note, version=1)
saga = _b.define(_b.wait_for("never"))
"""


async def cli(d: Deployment, *args: str) -> tuple[int, str, str]:
    """``saga ARGS`` in the deployment's namespace: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        SAGA,
        *args,
        env=d.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_json(d: Deployment, *args: str) -> Any:
    code, out, err = await cli(d, *args, "--json")
    assert code == 0, f"saga {' '.join(args)} exited {code}: {err}"
    return json.loads(out)


async def dead_reasons(d: Deployment) -> Counter[tuple[str, str]]:
    """``(message id, reason)`` of every dead letter, as ``saga dead-letters list`` shows them."""
    listed = await cli_json(d, "dead-letters", "list", "--limit", "1000")
    return Counter((letter["message_id"], letter["reason"]) for letter in listed)


def with_module(d: Deployment, tmp: Path, name: str, source: str) -> dict[str, str]:
    """An environment in which ``name`` is importable (for ``saga run --saga``)."""
    (tmp / f"{name}.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join((str(tmp), d.env["PYTHONPATH"]))}


@pytest.mark.timeout(180)
async def test_bad_input_of_every_kind_is_listed_with_its_reason_and_redrive_loses_none(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy()
    d.coordinator()
    d.participant()
    await d.wait_ready(coordinators=1, participants=1)

    transport = await connect_rabbit(d.ns)  # no size limit of its own: it sends the oversized
    try:
        now = datetime.now(UTC)
        start = StartSaga(
            message_id="start:nope", saga_id="nope", saga_name="no.such.saga", input={}, sent_at=now
        )
        signal = Signal(message_id="signal:ghost", saga_id="ghost", name="approval", sent_at=now)
        bad: list[tuple[str, str, bytes]] = [
            ("bad-json", "x.StartSaga", b"{not json"),
            ("bad-schema", "x.StartSaga", b'{"type": "Signal", "message_id": 1}'),
            ("bad-type", "x.Teleport", b'{"type": "Teleport", "message_id": "t"}'),
            ("bad-size", "x.StartSaga", b"x" * (70 * 1024)),
            ("start:nope", routes.start_key("no.such.saga"), DEFAULT_CODEC.encode(start)),
            ("signal:ghost", routes.SIGNAL_KEY, DEFAULT_CODEC.encode(signal)),
        ]
        for message_id, key, body in bad:
            await transport.publish("events", key, body, message_id=message_id)
        # And a command no participant can read.
        await transport.publish("commands", "payments.Charge", b"{oops", message_id="bad-command")
    finally:
        await transport.close()
    expected = Counter(
        {
            ("bad-json", "malformed_json"): 1,
            ("bad-schema", "schema_mismatch"): 1,
            ("bad-type", "unknown_type"): 1,
            ("bad-size", "too_large"): 1,
            ("start:nope", "unknown_saga"): 1,
            ("signal:ghost", "unknown_saga"): 1,
            ("bad-command", "malformed_json"): 1,
        }
    )

    async def all_listed() -> Counter[tuple[str, str]] | None:
        found = await dead_reasons(d)
        return found if found == expected else None

    await poll("every bad input in the dead letters", all_listed, timeout=30)
    [shown] = await cli_json(d, "dead-letters", "show", "bad-command")
    assert (shown["queue"], shown["routing_key"]) == ("payments.commands", "payments.Charge")

    code, out, err = await cli(d, "dead-letters", "redrive")
    assert code == 0, err
    assert "7 dead letter(s) moved back" in out

    # Still bad, each is dead-lettered again by its consumer, with the same reason.
    await poll("every redriven letter back with its reason", all_listed, timeout=30)


@pytest.mark.timeout(180)
async def test_a_start_redriven_once_its_definition_is_loaded_runs_exactly_once(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    d = deploy()
    orders, d.saga = d.saga, "other_saga:saga"
    other = d.coordinator(env=with_module(d, tmp_path, "other_saga", OTHER_SAGA))
    d.saga = orders
    d.participant()
    await poll(
        "the coordinator without order.place to consume",
        lambda: _consumers(d, "coordinator.events"),
        timeout=60,
    )

    code, _out, err = await cli(
        d, "start", "order.place", "--id", "A-1", "--data", json.dumps(ORDER)
    )
    assert code == 1 and "refused" in err, err
    assert await dead_reasons(d) == Counter({("start:A-1", "unknown_saga"): 1})

    await other.stop()
    d.coordinator()  # the order saga's coordinator
    await d.wait_ready(coordinators=1, participants=1)
    code, out, err = await cli(d, "dead-letters", "redrive", "--id", "start:A-1")
    assert code == 0 and "moved start:A-1 back to coordinator.events" in out, err

    async def ended() -> dict[str, Any] | None:
        code, out, _err = await cli(d, "show", "A-1", "--json")
        found: dict[str, Any] = json.loads(out) if code == 0 else {}
        return found if found.get("status") == "completed" else None

    await poll("A-1 to complete", ended, timeout=60)
    history = await cli_json(d, "history", "A-1")
    inputs = [entry["input"]["type"] for entry in history]
    assert inputs.count("Start") == 1, inputs
    effects = Counter(ledger_rows(str(d.ledger_path)))
    assert effects == Counter(
        {("inventory", "reserve", "A-1"): 1, ("payments", "charge", "A-1"): 1,
         ("shipping", "book", "A-1"): 1}
    ), effects  # fmt: skip
    assert await dead_reasons(d) == Counter()
    code, _out, err = await cli(d, "dead-letters", "redrive", "--id", "start:A-1")
    assert code == 1 and err.startswith("error: no dead letter"), err


@pytest.mark.timeout(180)
async def test_stuck_names_the_step_waiting_for_a_stopped_participant(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy(step_timeout=300)  # the reply is awaited, not timed out, during the test
    d.coordinator()
    participant = d.participant()
    await d.wait_ready(coordinators=1, participants=1)
    await participant.stop()

    code, _out, err = await cli(
        d, "start", "order.place", "--id", "S-1", "--data", json.dumps(ORDER)
    )
    assert code == 0, err

    async def stuck() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = await cli_json(d, "stuck", "--older-than", "1s")
        return found or None

    [saga] = await poll("S-1 to be stuck", stuck, timeout=30)
    assert (saga["saga_id"], saga["status"]) == ("S-1", "running")
    [reply] = [w for w in saga["waits"] if w["what"] == "reply"]
    assert (reply["step"], reply["kind"], reply["attempt"]) == ("reserve", "action", 1)
    assert (reply["service"], reply["command"]) == ("inventory", "Reserve")
    assert reply["since"] and reply["due"]
    code, out, _err = await cli(d, "stuck", "--older-than", "1s")
    assert code == 0 and "reply to reserve" in out and "inventory.Reserve" in out
    assert await cli_json(d, "stuck", "--older-than", "1h") == []


async def _consumers(d: Deployment, queue: str) -> bool | None:
    counts = await d.consumers()
    return True if counts and counts.get(queue, 0) >= 1 else None
