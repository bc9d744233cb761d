"""Signed messages end to end, on the shared RabbitMQ and Redis: a coordinator and
the example participants as processes, each holding its own keys
(``SAGA_SIGNING_KEYS``); forged messages dead-lettered with their reason and
the saga untouched; a key rotation with messages in flight loses nothing."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from procs import Deployment, poll
from pydantic import SecretStr
from workload import SAGA, Run, make_orders

from contracts import CancelSaga, Codec, routes
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.adapters.signing import Keyring, SigningTransport
from coordinator.client import SagaClient
from coordinator.ports import DeadLetter
from coordinator.service import open_client

SERVICES = ("inventory", "payments", "loyalty", "shipping")
DAY = timedelta(days=1)


def keys_of(labels: Iterable[str], principals: Iterable[str]) -> dict[str, str]:
    return {f"{p}:{label}": SECRETS[f"{p}:{label}"] for p in principals for label in labels}


SECRETS = {
    f"{p}:{label}": secrets.token_urlsafe(32)
    for p in (*SERVICES, "operator", "coordinator", "rogue")
    for label in ("old", "new")
}
EVERYONE = (*SERVICES, "operator", "coordinator")


def ring_env(keys: dict[str, str], active: Iterable[str] | None = None) -> str:
    doc: dict[str, object] = {"keys": keys}
    if active is not None:
        doc["active"] = sorted(active)
    return json.dumps(doc)


async def approval_waiting(client: SagaClient, saga_id: str) -> bool | None:
    state = await client.get(saga_id)
    waiting = bool(state) and state["steps"].get("approval", {}).get("status") == "waiting"
    return True if waiting else None


@pytest.mark.timeout(180)
async def test_forged_messages_are_dead_lettered_and_change_nothing(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy(env={"SAGA_SIGNING_KEYS": ring_env(keys_of(["old"], EVERYONE))})
    d.coordinator()
    d.participant(env={"SAGA_SIGNING_KEYS": ring_env(keys_of(["old"], SERVICES))})
    await d.wait_ready(coordinators=1, participants=1)
    operator = d.settings.model_copy(
        update={"signing_keys": SecretStr(ring_env(keys_of(["old"], ["operator"])))}
    )
    [order] = make_orders({"large": 1}, prefix="signed")
    raw = await RabbitTransport.connect(d.amqp_url, namespace=d.ns)
    try:
        async with open_client(operator) as client:
            await client.start(SAGA, order.input(), order.id)
            await poll("the approval wait", lambda: approval_waiting(client, order.id), timeout=60)
            before = (await client.get(order.id), len(await client.history(order.id)))

            codec = Codec()
            ring = Keyring.of(keys_of(["old"], ["operator"]))
            now = time.time
            signer = SigningTransport(raw, ring, max_age=DAY)
            rogue = SigningTransport(raw, Keyring.of(keys_of(["old"], ["rogue"])), max_age=DAY)
            ahead = SigningTransport(raw, ring, max_age=DAY, clock=lambda: now() + 3600)

            sent_at = datetime.now(UTC)

            def cancel(mid: str, saga_id: str = order.id) -> bytes:
                message = CancelSaga(message_id=mid, saga_id=saga_id, sent_at=sent_at)
                return codec.encode(message)

            key = routes.CANCEL_KEY
            forged = {
                # Signed for another saga, then pointed at ours.
                "tampered-body": (
                    key,
                    cancel("tampered-body"),
                    signer.sign("events", key, cancel("tampered-body", "other"), "tampered-body"),
                ),
                # Signed as a start, sent as a cancel.
                "tampered-key": (
                    key,
                    cancel("tampered-key"),
                    signer.sign(
                        "events", routes.start_key(SAGA), cancel("tampered-key"), "tampered-key"
                    ),
                ),
                "unknown-key": (
                    "orders.TaskCompleted",
                    cancel("unknown-key"),
                    rogue.sign(
                        "events", "orders.TaskCompleted", cancel("unknown-key"), "unknown-key"
                    ),
                ),
                "missing": (key, cancel("missing"), {}),
                "future": (
                    key,
                    cancel("future"),
                    ahead.sign("events", key, cancel("future"), "future"),
                ),
            }
            for mid, (routing_key, body, headers) in forged.items():
                await raw.publish("events", routing_key, body, message_id=mid, headers=headers)

            dead = RabbitDeadLetters(raw)
            letters = await poll(
                "the forged messages dead-lettered",
                lambda: _at_least(dead, len(forged)),
                timeout=30,
            )
            assert {letter.message_id: letter.reason for letter in letters} == {
                "tampered-body": "bad_signature",
                "tampered-key": "bad_signature",
                "unknown-key": "unknown_key",
                "missing": "missing_signature",
                "future": "future_timestamp",
            }
            assert (await client.get(order.id), len(await client.history(order.id))) == before

            # The operator's own, signed, signal goes through and the saga ends.
            await client.signal(order.id, "approval", {"approved": True, "by": "e2e"})
            state = await client.wait(order.id, timeout=60)
            assert state is not None and state.status == "completed"
    finally:
        await raw.close()


@pytest.mark.timeout(240)
async def test_a_rotation_loses_nothing_in_flight(deploy: Callable[..., Deployment]) -> None:
    """Starts signed with the old operator key wait in the queue while every ring
    moves to the new keys (old ones still accepted); all of them run through."""
    old = keys_of(["old"], EVERYONE)
    both = keys_of(["old", "new"], EVERYONE)
    new_ids = keys_of(["new"], EVERYONE)
    d = deploy()
    raw = await RabbitTransport.connect(d.amqp_url, namespace=d.ns)
    try:
        await raw.declare(routes.EVENTS_QUEUE, "events", routes.EVENTS_BINDING)
        orders = make_orders({"plain": 6}, prefix="rotation")
        before = d.settings.model_copy(update={"signing_keys": SecretStr(ring_env(old))})
        async with open_client(before) as client:
            run = Run(client, orders[:3])
            await run.start_all()  # in the queue, signed with operator:old only

        d.coordinator(env={"SAGA_SIGNING_KEYS": ring_env(both, active=new_ids)})
        services = keys_of(["old", "new"], SERVICES)
        d.participant(
            env={"SAGA_SIGNING_KEYS": ring_env(services, active=keys_of(["new"], SERVICES))}
        )
        await d.wait_ready(coordinators=1, participants=1)
        # An operator not moved yet still signs with the old key only.
        async with open_client(before) as client:
            late = Run(client, orders[3:])
            await late.start_all()
        after = d.settings.model_copy(
            update={"signing_keys": SecretStr(ring_env(both, active=new_ids))}
        )
        async with open_client(after) as client:
            run = Run(client, orders)
            await run.wait_all(timeout=120)
            assert {run.states[o.id]["status"] for o in orders} == {"completed"}
        assert await RabbitDeadLetters(raw).list(routes.EVENTS_QUEUE) == []
    finally:
        await raw.close()


async def _at_least(dead: RabbitDeadLetters, count: int) -> Sequence[DeadLetter] | None:
    letters = await dead.list(routes.EVENTS_QUEUE)
    return letters if len(letters) >= count else None


@pytest.mark.timeout(120)
async def test_a_coordinator_without_a_services_key_does_not_start(
    deploy: Callable[..., Deployment],
) -> None:
    no_payments = [p for p in EVERYONE if p != "payments"]
    d = deploy(env={"SAGA_SIGNING_KEYS": ring_env(keys_of(["old"], no_payments))})
    coordinator = d.coordinator()
    assert await coordinator.wait(timeout=60) == 2
    assert (
        "error: no active key in SAGA_SIGNING_KEYS may sign 'payments.Command' on 'commands'"
        in coordinator.tail()
    )
