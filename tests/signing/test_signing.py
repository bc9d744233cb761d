"""Signed messages on the in-memory transport: the canonical bytes, who may sign
what, the keyring's refusals, and each failure dead-lettered with its reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.adapters.memory import MemoryDeadLetters, MemoryTransport
from coordinator.adapters.signing import (
    Keyring,
    KeyringError,
    SigningTransport,
    may_publish,
    signed_bytes,
)
from coordinator.ports import Delivery

NOW = 1_800_000_000.0
SECRET = {
    kid: (kid * 8)[:40]
    for kid in ("payments:1", "payments:2", "shipping:1", "operator:1", "coordinator:1")
}
REPLY = "reply.payments.orders.TaskCompleted"


def ring(*kids: str, active: list[str] | None = None, accepted: list[str] | None = None) -> Keyring:
    return Keyring.of({k: SECRET[k] for k in kids}, active=active, accepted=accepted)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


# -- the canonical bytes ------------------------------------------------------------


def test_the_signed_bytes_are_exactly_the_documented_ones() -> None:
    got = signed_bytes("payments:1", "m-1", 1700000000, "events", REPLY, b'{"a":1}')
    assert got == (
        b"saga-sig/v1\n"
        b'["payments:1","m-1",1700000000,"events","reply.payments.orders.TaskCompleted",'
        b'"application/json"]\n{"a":1}'
    )


def test_moving_a_dot_between_fields_changes_the_bytes() -> None:
    # Dot-joined, both would read "a.b.c.d": the JSON array keeps fields apart.
    one = signed_bytes("k:1", "a.b", 1, "events", "c.d", b"")
    two = signed_bytes("k:1", "a", 1, "events", "b.c.d", b"")
    assert one != two


def test_a_known_vector_matches_an_independent_hmac() -> None:
    data = signed_bytes("payments:1", "m-1", 5, "events", REPLY, b"{}")
    mac = hmac.new(SECRET["payments:1"].encode(), data, hashlib.sha256).digest()
    headers = SigningTransport(
        MemoryTransport(), ring("payments:1"), max_age=timedelta(days=1), clock=lambda: 5.0
    ).sign("events", REPLY, b"{}", "m-1")
    assert headers == {"x-sig-ts": "5", "x-sig": "v1,payments:1," + base64.b64encode(mac).decode()}


# -- who may sign what ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "exchange", "key", "allowed"),
    [
        ("payments", "events", "reply.payments.orders.TaskCompleted", True),
        ("shipping", "events", "reply.payments.orders.TaskCompleted", False),
        ("operator", "events", "reply.payments.orders.TaskFailed", False),
        ("operator", "events", "control.start.orders", True),
        ("coordinator", "events", "control.cancel", True),
        ("payments", "events", "control.signal", False),
        ("payments", "commands", "payments.Charge", True),
        ("payments", "commands", "shipping.Book", False),
        ("operator", "commands", "payments.Charge", False),
        ("coordinator", "lifecycle", "orders.completed", True),
        ("payments", "lifecycle", "orders.completed", False),
        # The keys before issue 16, for one release.
        ("operator", "events", "orders.StartSaga", True),
        ("operator", "events", "order.place.StartSaga", True),
        ("payments", "events", "order.place.TaskFailed", True),
        ("payments", "events", "signal.Signal", False),
        ("payments", "events", "orders.TaskCompleted", True),
        ("operator", "events", "orders.TaskCompleted", False),
        ("payments", "events", "anything.Else", False),
    ],
)
def test_each_principal_signs_only_its_own_keys(
    principal: str, exchange: str, key: str, allowed: bool
) -> None:
    assert may_publish(principal, exchange, key) is allowed


# -- the keyring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"keys": {"payments:1": "short"}}', "has 5 bytes, at least 32"),
        ('{"keys": {"payments": "' + "x" * 40 + '"}}', "is not {principal}:{label}"),
        ('{"keys": {}}', "holds no key"),
        ('{"keys": {"payments:1": "' + "x" * 40 + '"}, "active": ["payments:2"]}', "no secret"),
        ('{"keys": [1]}', "SAGA_SIGNING_KEYS is not"),
        ("/no/such/dir", "neither a JSON object nor a directory"),
    ],
)
def test_a_bad_keyring_is_refused_in_one_line_without_its_secret(value: str, says: str) -> None:
    with pytest.raises(KeyringError, match="SAGA_SIGNING_KEYS") as caught:
        Keyring.load(value)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value) and "x" * 40 not in str(caught.value)


def test_a_directory_of_key_files(tmp_path: Path) -> None:
    (tmp_path / "payments:1").write_text(SECRET["payments:1"] + "\n")
    (tmp_path / "payments:2").write_text(SECRET["payments:2"])
    (tmp_path / "active").write_text("payments:2\n")
    keys = Keyring.load(str(tmp_path))
    assert keys.secrets["payments:1"] == SECRET["payments:1"].encode()
    assert (keys.active, keys.accepted) == ({"payments:2"}, {"payments:1", "payments:2"})


# -- verification on a transport ------------------------------------------------------


async def signed_pair(
    sender: Keyring, receiver: Keyring, clock: Clock
) -> tuple[SigningTransport, MemoryTransport, list[Delivery]]:
    memory = MemoryTransport()
    seen: list[Delivery] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery)
        await delivery.ack()

    day = timedelta(days=1)
    await SigningTransport(memory, receiver, max_age=day, clock=clock).subscribe(
        "coordinator.events", "events", "#", handle
    )
    return SigningTransport(memory, sender, max_age=day, clock=clock), memory, seen


async def test_a_signed_reply_reaches_the_handler() -> None:
    sender, memory, seen = await signed_pair(ring("payments:1"), ring("payments:1"), Clock())
    await sender.publish("events", REPLY, b"{}", message_id="m-1", headers={"k": "v"})
    await memory.drain()
    assert [d.body for d in seen] == [b"{}"] and seen[0].headers["k"] == "v"
    assert memory.dead_letters == []


async def forge(memory: MemoryTransport, sender: SigningTransport, how: str) -> None:
    headers = sender.sign("events", REPLY, b'{"ok":true}', "m-1")
    key, body = REPLY, b'{"ok":true}'
    if how == "tampered_body":
        body = b'{"ok":false}'
    elif how == "tampered_key":
        key = "reply.payments.orders.TaskFailed"
    elif how == "other_service_key":
        key = "reply.shipping.orders.TaskCompleted"
    elif how == "missing":
        headers = {}
    elif how == "garbled_ts":
        headers["x-sig-ts"] = "soon"
    await memory.publish("events", key, body, message_id="m-1", headers=headers)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("tampered_body", "bad_signature"),
        ("tampered_key", "bad_signature"),
        ("other_service_key", "bad_signature"),
        ("missing", "missing_signature"),
        ("garbled_ts", "bad_signature"),
    ],
)
async def test_a_forged_message_is_dead_lettered_with_its_reason(how: str, reason: str) -> None:
    keys = ring("payments:1", "shipping:1")
    sender, memory, seen = await signed_pair(keys, keys, Clock())
    await forge(memory, sender, how)
    await memory.drain()
    assert seen == []
    assert [d.reason for d in memory.dead_letters] == [reason]


async def test_an_unknown_key_is_dead_lettered() -> None:
    sender, memory, seen = await signed_pair(ring("payments:2"), ring("payments:1"), Clock())
    await sender.publish("events", REPLY, b"{}", message_id="m-1")
    await memory.drain()
    assert seen == [] and [d.reason for d in memory.dead_letters] == ["unknown_key"]
    assert "payments:2" in memory.dead_letters[0].detail


@pytest.mark.parametrize(
    ("signed_at", "reason"),
    [
        (NOW + 301, "future_timestamp"),
        (NOW + 299, None),
        (NOW - 86_399, None),  # hours in a queue are fine, up to the dedupe retention
        (NOW - 86_401, "stale"),
    ],
)
async def test_freshness_is_five_minutes_ahead_and_the_retention_behind(
    signed_at: float, reason: str | None
) -> None:
    clock = Clock()
    keys = ring("payments:1")
    sender, memory, seen = await signed_pair(keys, keys, clock)
    clock.now = signed_at
    headers = sender.sign("events", REPLY, b"{}", "m-1")
    clock.now = NOW
    await memory.publish("events", REPLY, b"{}", message_id="m-1", headers=headers)
    await memory.drain()
    assert [d.reason for d in memory.dead_letters] == ([] if reason is None else [reason])
    assert len(seen) == (1 if reason is None else 0)


async def test_during_a_rotation_both_keys_sign_and_either_side_verifies() -> None:
    both = ring("payments:1", "payments:2")
    headers = SigningTransport(MemoryTransport(), both, max_age=timedelta(days=1)).sign(
        "events", REPLY, b"{}", "m-1"
    )
    assert [e.split(",")[1] for e in headers["x-sig"].split()] == ["payments:1", "payments:2"]
    for receiver in (ring("payments:1"), ring("payments:2"), both):
        sender, memory, seen = await signed_pair(both, receiver, Clock())
        await sender.publish("events", REPLY, b"{}", message_id="m-1")
        await memory.drain()
        assert len(seen) == 1 and memory.dead_letters == []


async def test_a_key_no_longer_accepted_is_unknown() -> None:
    moved = ring("payments:1", "payments:2", active=["payments:2"], accepted=["payments:2"])
    sender, memory, _ = await signed_pair(ring("payments:1"), moved, Clock())
    await sender.publish("events", REPLY, b"{}", message_id="m-1")
    await memory.drain()
    assert [d.reason for d in memory.dead_letters] == ["unknown_key"]


async def test_publishing_without_a_key_that_may_sign_it_is_refused() -> None:
    sender = SigningTransport(MemoryTransport(), ring("payments:1"), max_age=timedelta(days=1))
    with pytest.raises(ValueError, match="no active key in SAGA_SIGNING_KEYS may sign"):
        await sender.publish("events", "control.cancel", b"{}", message_id="m-1")


async def test_a_redriven_dead_letter_is_signed_again_by_the_trust_root() -> None:
    clock = Clock()
    root = ring("payments:1", "payments:2", active=["payments:2"], accepted=["payments:2"])
    sender, memory, seen = await signed_pair(ring("payments:1"), root, clock)
    await sender.publish("events", REPLY, b"{}", message_id="m-1")
    await memory.drain()
    assert [d.reason for d in memory.dead_letters] == ["unknown_key"]
    resign = SigningTransport(memory, root, max_age=timedelta(days=1), clock=clock).sign
    await MemoryDeadLetters(memory, resign=resign).redrive("coordinator.events")
    await memory.drain()
    assert [d.message_id for d in seen] == ["m-1"] and memory.dead_letters == []
    assert seen[0].headers["x-sig"].split(",")[1] == "payments:2"


# -- at start -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--saga", "coordinator.examples.orders:saga"],
        ["participant", "coordinator.examples.orders.worker:services"],
    ],
)
def test_a_bad_keyring_stops_the_process_at_start_in_one_line(command: list[str]) -> None:
    env = {**os.environ, "SAGA_SIGNING_KEYS": '{"keys": {"payments:1": "' + "s" * 20 + '"}}'}
    code = "import sys; sys.argv[0] = 'saga'; from coordinator.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SAGA_SIGNING_KEYS: the secret of 'payments:1' has 20 bytes, at least 32 are "
        "needed: python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one"
    ]


async def test_a_valid_signature_by_a_key_that_may_not_send_it_is_refused() -> None:
    # shipping holds its own key and computes a correct HMAC over a payments reply.
    keys = ring("payments:1", "shipping:1", "operator:1")
    _, memory, seen = await signed_pair(keys, keys, Clock())
    for kid, key in [("shipping:1", REPLY), ("payments:1", "control.cancel")]:
        data = signed_bytes(kid, "m-1", int(NOW), "events", key, b"{}")
        mac = base64.b64encode(hmac.digest(SECRET[kid].encode(), data, "sha256")).decode()
        headers = {"x-sig-ts": str(int(NOW)), "x-sig": f"v1,{kid},{mac}"}
        await memory.publish("events", key, b"{}", message_id="m-1", headers=headers)
    await memory.drain()
    assert seen == []
    assert [(d.reason, d.detail) for d in memory.dead_letters] == [
        ("bad_signature", f"key shipping:1 may not sign {REPLY!r} on 'events'"),
        ("bad_signature", "key payments:1 may not sign 'control.cancel' on 'events'"),
    ]
