"""Sensitive saga data on the in-memory stores and on real Redis and RabbitMQ: never
stored, recorded or logged in clear; participants still get it; keys rotate; an
altered ciphertext fails loudly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from pii_support import Payment, Seen, definition, new_key, secrets, services
from servers import connect_rabbit, connect_redis, drop_namespace, namespace

from contracts import DEFAULT_CODEC, Signal, routes
from coordinator import Coordinator, SagaDefinitionError, SealedDataError, SettingsError
from coordinator._sealing import Keyring
from coordinator.adapters.memory import (
    MemoryDeadLetters,
    MemoryIdempotencyStore,
    MemorySagaStore,
    MemoryTransport,
    SystemClock,
)
from coordinator.adapters.rabbitmq import RabbitDeadLetters
from coordinator.adapters.redis import RedisIdempotencyStore, RedisSagaStore
from coordinator.ports import Commit, HistoryEntry, Transport, Worker
from coordinator.runtime import Store
from coordinator.service._logging import _QUIETER

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class Rig:
    """One backend (memory, or Redis and RabbitMQ) with coordinators and workers to start."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ns = namespace()
        self.seen = Seen()
        self.written: list[bytes] = []  # every byte string handed to the store
        self.coordinators: list[Coordinator] = []
        self.workers: list[Worker] = []
        self.transports: list[Transport] = []
        self.redis: Any = None
        self.store: Store

    async def open(self) -> None:
        if self.kind == "memory":
            self.memory = MemoryTransport()
            self.store = MemorySagaStore()
            self.idempotency: Any = MemoryIdempotencyStore()
        else:
            self.redis = await connect_redis()
            self.store = RedisSagaStore(self.redis, namespace=self.ns)
            from datetime import timedelta

            self.idempotency = RedisIdempotencyStore(
                self.redis, namespace=self.ns, ttl=timedelta(hours=1)
            )
        self._record_writes()

    def _record_writes(self) -> None:
        commit, record = self.store.commit, self.store.record

        async def recording_commit(c: Commit) -> Any:
            self.written += [c.state, msgspec.json.encode(c.history)]
            self.written += [e.body for e in c.outbox]
            return await commit(c)

        async def recording_record(saga_id: str, entry: HistoryEntry, **kw: Any) -> None:
            self.written.append(msgspec.json.encode(entry))
            await record(saga_id, entry, **kw)

        self.store.commit = recording_commit  # type: ignore[method-assign]
        self.store.record = recording_record  # type: ignore[method-assign]

    async def transport(self) -> Transport:
        if self.kind == "memory":
            return self.memory
        t = await connect_rabbit(self.ns)
        self.transports.append(t)
        return t

    async def coordinator(self, keys: str, *, wait: bool = False) -> Coordinator:
        c = Coordinator(
            [definition(wait=wait)],
            transport=await self.transport(),
            store=self.store,
            clock=SystemClock(),
            keyring=Keyring.parse(keys),
        )
        await c.start()
        self.coordinators.append(c)
        return c

    async def participants(self) -> None:
        transport = await self.transport()
        for service in services(self.seen):
            w = service.worker(
                transport=transport, idempotency=self.idempotency, clock=SystemClock()
            )
            await w.start()
            self.workers.append(w)

    async def stop_coordinators(self) -> None:
        for c in self.coordinators:
            await c.stop()
        self.coordinators.clear()

    async def everything_stored(self) -> bytes:
        """Every value the backend holds for the namespace, whatever its type."""
        if self.kind == "memory":
            return repr(vars(self.store)).encode()
        r, out = self.redis, []
        async for key in r.scan_iter(match=f"{self.ns}:*", count=1000):
            kind = await r.type(key)
            out.append(key)
            if kind == b"string":
                out.append(await r.get(key))
            elif kind == b"hash":
                for f, v in (await r.hgetall(key)).items():
                    out += [f, v]
            elif kind == b"list":
                out += await r.lrange(key, 0, -1)
            elif kind == b"set":
                out += list(await r.smembers(key))
            elif kind == b"zset":
                out += [m for m, _ in await r.zrange(key, 0, -1, withscores=True)]
            elif kind == b"stream":
                out += [repr(e).encode() for e in await r.xrange(key)]
            else:
                raise AssertionError(f"{key!r}: a Redis type the scan does not read: {kind!r}")
        assert out, "the scan found nothing: it would prove nothing"
        return b"\n".join(out)

    async def close(self) -> None:
        await self.stop_coordinators()
        for w in self.workers:
            await w.stop()
        if self.kind == "memory":
            await self.memory.close()
            return
        queues: set[str] = set()
        for t in self.transports:
            queues |= t.queues
        if self.transports:
            await self.transports[0].delete_namespace(queues)
        for t in self.transports:
            await t.close()
        await drop_namespace(self.redis, self.ns)
        await self.redis.aclose()


@pytest.fixture(params=["memory", "redis"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    r = Rig(request.param)
    await r.open()
    try:
        yield r
    finally:
        await r.close()


async def until(check: Callable[[], Any], *, within: float = 10, what: str) -> None:
    began = time.monotonic()
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() - began > within:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)


async def status(c: Coordinator, saga_id: str) -> str:
    state = await c.load(saga_id)
    return "" if state is None else state.status


async def test_sensitive_values_are_nowhere_in_clear_but_reach_the_participant(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As `saga run` configures them (service._logging): the AMQP client's DEBUG dumps
    # every frame, commands to participants included, which carry the clear values.
    for noisy in _QUIETER:
        caplog.set_level(logging.WARNING, logger=noisy)
    card, email = secrets()
    c = await rig.coordinator(f"k1:{new_key()}")
    await rig.participants()
    await c.start_saga("pii.pay", "p1", {"order_id": "p1", "card": card, "email": email})
    await until(lambda: status(c, "p1"), what="the saga is stored")
    await until(lambda: rig.seen.cards == [card], what="the participant gets the clear card")
    await until(lambda: _equals(status(c, "p1"), "completed"), what="the saga completes")

    state = await c.load("p1")
    assert state is not None and (state.data.card, state.data.email) == (card, email)
    assert state.data.receipt == "r-p1"  # what is not sensitive stays readable

    stored = await rig.everything_stored()
    written = b"\n".join(rig.written)
    history = b"\n".join(msgspec.json.encode(e) for e in await rig.store.history("p1"))
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in caplog.records)
    for secret in (card, email):
        for where, text in [("stored", stored), ("written", written), ("history", history)]:
            assert secret.encode() not in text, f"{secret} in clear in {where}"
        assert secret not in logged
    # The test's own check: the values are there, sealed under the key id.
    assert b'"card":"enc:v1:k1:' in written and b'"email":"enc:v1:k1:' in written


async def _equals(value: Any, expected: str) -> bool:
    return await value == expected


async def test_data_sealed_with_the_old_key_is_read_after_the_active_key_changes(
    rig: Rig,
) -> None:
    card, email = secrets()
    old, new = new_key(), new_key()
    first = await rig.coordinator(f"old:{old}", wait=True)
    await rig.participants()
    await first.start_saga("pii.pay", "r1", {"order_id": "r1", "card": card, "email": email})
    await until(lambda: _equals(_step(first, "r1", "approval"), "waiting"), what="it waits")
    await rig.stop_coordinators()

    # Rotated: the new key seals, the old one still opens.
    second = await rig.coordinator(f"new:{new},old:{old}", wait=True)
    await second.signal("r1", "approval", {}, "sig-1")
    await until(lambda: _equals(status(second, "r1"), "completed"), what="it completes")
    assert rig.seen.cards == [card]  # the charge, sent after the rotation, had it in clear
    stored = await rig.store.load("r1")
    assert stored is not None and b'"card":"enc:v1:new:' in stored.state
    await rig.stop_coordinators()

    # Without the key a saga was sealed with, it is refused loudly, never read as garbage.
    third = await rig.coordinator(f"other:{new_key()}", wait=True)
    with pytest.raises(SealedDataError, match=r"r1\|data\.(card|email).*'new'.*not in"):
        await third.load("r1")


async def _step(c: Coordinator, saga_id: str, step: str) -> str:
    state = await c.load(saga_id)
    return "" if state is None or step not in state.steps else state.steps[step].status


async def test_an_altered_ciphertext_fails_loudly(rig: Rig) -> None:
    card, email = secrets()
    keys = f"k1:{new_key()}"
    c = await rig.coordinator(keys, wait=True)
    await rig.participants()
    await c.start_saga("pii.pay", "t1", {"order_id": "t1", "card": card, "email": email})
    await until(lambda: _equals(_step(c, "t1", "approval"), "waiting"), what="it waits")
    await rig.stop_coordinators()

    stored = await rig.store.load("t1")
    assert stored is not None
    doc = msgspec.json.decode(stored.state)
    sealed: str = doc["data"]["card"]
    # A character inside the tag, not the last one (whose low bits base64 may ignore).
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    moved = dict(doc, data=dict(doc["data"], card=doc["data"]["email"]))  # another field's
    for bad in (dict(doc, data=dict(doc["data"], card=flipped)), moved):
        await _overwrite(rig, "t1", msgspec.json.encode(bad), stored.revision)
        fresh = await rig.coordinator(keys, wait=True)
        with pytest.raises(SealedDataError, match=r"t1\|data\.card: does not authenticate"):
            await fresh.load("t1")
        await rig.stop_coordinators()

    # A message for it is dead-lettered at once with the reason; the saga is untouched.
    c = await rig.coordinator(keys, wait=True)
    signal = Signal(message_id="sig-t1", saga_id="t1", name="approval", data={}, sent_at=T0)
    sender = await rig.transport()
    await sender.publish(
        "events", routes.SIGNAL_KEY, DEFAULT_CODEC.encode(signal), message_id="sig-t1"
    )
    dead_letters = (
        MemoryDeadLetters(rig.memory) if rig.kind == "memory" else RabbitDeadLetters(sender)  # type: ignore[arg-type]
    )

    async def parked() -> list[Any]:
        return list(await dead_letters.list(routes.EVENTS_QUEUE))

    async def signal_parked() -> list[Any]:
        return [d for d in await parked() if d.message_id == "sig-t1"]

    await until(signal_parked, what="the signal is dead-lettered")
    [dead] = await signal_parked()
    # Anything else for the saga that came meanwhile went the same way.
    assert {d.reason for d in await parked()} == {"sealed_data"}
    assert (dead.reason, dead.message_id) == ("sealed_data", "sig-t1")
    assert "t1|data.card" in dead.detail and card not in dead.detail
    after = await rig.store.load("t1")
    assert after is not None and after.revision == stored.revision


async def _overwrite(rig: Rig, saga_id: str, state: bytes, revision: int) -> None:
    """Change the stored state behind the coordinator's back, as an attacker with
    write access to Redis would."""
    if rig.kind == "memory":
        store: Any = rig.store
        store._states[saga_id] = msgspec.structs.replace(store._states[saga_id], state=state)
        return
    found = [k async for k in rig.redis.scan_iter(match=f"{rig.ns}:*", count=1000)]
    for key in found:
        if (
            await rig.redis.type(key) == b"hash"
            and await rig.redis.hexists(key, "state")
            and b'"saga_id":"' + saga_id.encode() in await rig.redis.hget(key, "state")
        ):
            await rig.redis.hset(key, "state", state)
            return
    raise AssertionError(f"no stored state of {saga_id} found to alter")


async def test_a_sensitive_definition_without_a_key_is_refused_at_start() -> None:
    with pytest.raises(
        SettingsError, match=r"'pii.pay' v1 marks data fields sensitive.*SAGA_DATA_KEYS"
    ):
        Coordinator(
            [definition()],
            transport=MemoryTransport(),
            store=MemorySagaStore(),
            clock=SystemClock(),
        )


def test_a_sensitive_name_that_is_no_field_is_refused() -> None:
    from coordinator import Saga

    saga = Saga("x", data=Payment, sensitive=["crad"])
    step = saga.step("s", service="a", send=lambda p: p, pivot=True)
    with pytest.raises(SagaDefinitionError, match=r"sensitive=\['crad'\] are not fields"):
        saga.define(step)
