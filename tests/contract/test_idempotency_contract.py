"""The participants' reply store, against memory and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from servers import connect_redis, drop_namespace

from coordinator import StoreUnavailableError
from coordinator.adapters.memory import MemoryIdempotencyStore
from coordinator.adapters.redis import RedisIdempotencyStore
from coordinator.ports import RecordedReply, Turn

MINUTE = timedelta(minutes=1)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    client = await connect_redis()
    yield RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(hours=1))
    await drop_namespace(client, ns)
    await client.aclose()


async def test_the_first_worker_holds_the_key_and_its_reply_is_returned(store: Any) -> None:
    assert await store.begin("s:step:action", "w1", MINUTE) is Turn.TAKEN
    assert await store.begin("s:step:action", "w2", MINUTE) is Turn.HELD_ELSEWHERE
    await store.finish("s:step:action", "w1", b'{"type":"TaskCompleted"}')
    assert await store.begin("s:step:action", "w2", MINUTE) == RecordedReply(
        b'{"type":"TaskCompleted"}'
    )
    assert await store.begin("s:step:compensation", "w2", MINUTE) is Turn.TAKEN


async def test_finishing_without_a_reply_lets_the_next_worker_run_it(store: Any) -> None:
    """Nothing to record (a handler cancelled): the next worker runs it."""
    assert await store.begin("k", "w1", MINUTE) is Turn.TAKEN
    await store.finish("k", "w1", None)
    assert await store.begin("k", "w2", MINUTE) is Turn.TAKEN


async def test_only_the_holder_releases_and_may_renew(store: Any) -> None:
    assert await store.begin("k", "w1", MINUTE) is Turn.TAKEN
    assert await store.begin("k", "w1", MINUTE) is Turn.TAKEN, "the holder may renew its hold"
    await store.finish("k", "w2", None)  # not the holder: the key stays held
    assert await store.begin("k", "w2", MINUTE) is Turn.HELD_ELSEWHERE
    await store.finish("k", "w1", None)
    assert await store.begin("k", "w2", MINUTE) is Turn.TAKEN


async def test_a_hold_expires(store: Any) -> None:
    assert await store.begin("k", "dead-worker", timedelta(milliseconds=100)) is Turn.TAKEN
    await asyncio.sleep(0.25)
    assert await store.begin("k", "w2", MINUTE) is Turn.TAKEN


async def test_redis_replies_expire_after_the_ttl(ns: str) -> None:
    client = await connect_redis()
    try:
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        assert await store.begin("k", "w", MINUTE) is Turn.TAKEN
        await store.finish("k", "w", b"reply")
        keys = [key async for key in client.scan_iter(match=f"{ns}:reply:*")]
        assert len(keys) == 1
        assert 0 < await client.ttl(keys[0]) <= 90
        assert [key async for key in client.scan_iter(match=f"{ns}:claim:*")] == []
    finally:
        await drop_namespace(client, ns)
        await client.aclose()


# -- the two keys of a step: no action after its undo ---------------------------------

ACTION, COMPENSATION = "s:step:action", "s:step:compensation"


async def test_an_action_not_begun_is_refused_once_its_compensation_began(store: Any) -> None:
    assert await store.begin(COMPENSATION, "w1", MINUTE) is Turn.TAKEN
    assert await store.begin(ACTION, "w2", MINUTE) is Turn.COMPENSATED
    # A compensation that failed retryably records nothing; the refusal stays.
    await store.finish(COMPENSATION, "w1", None)
    assert await store.begin(ACTION, "w2", MINUTE) is Turn.COMPENSATED
    await store.finish(COMPENSATION, "w1", b"undone")
    assert await store.begin(ACTION, "w2", MINUTE) is Turn.COMPENSATED
    # Other steps, and other sagas, are not concerned.
    assert await store.begin("s:other:action", "w2", MINUTE) is Turn.TAKEN
    assert await store.begin("t:step:action", "w2", MINUTE) is Turn.TAKEN


async def test_a_compensation_waits_while_its_action_is_held(store: Any) -> None:
    assert await store.begin(ACTION, "w1", MINUTE) is Turn.TAKEN
    assert await store.begin(COMPENSATION, "w2", MINUTE) is Turn.HELD_ELSEWHERE
    assert await store.begin(COMPENSATION, "w1", MINUTE) is Turn.HELD_ELSEWHERE, "whoever asks"
    await store.finish(ACTION, "w1", b"done")
    assert await store.begin(COMPENSATION, "w2", MINUTE) is Turn.TAKEN
    # The action recorded before its compensation still answers its retries.
    assert await store.begin(ACTION, "w3", MINUTE) == RecordedReply(b"done")


async def test_a_compensation_runs_once_its_action_hold_lapsed(store: Any) -> None:
    """A worker frozen inside the action loses its hold within the lease; the
    compensation runs then, and the frozen worker's renewal is refused."""
    assert await store.begin(ACTION, "frozen", timedelta(milliseconds=100)) is Turn.TAKEN
    await asyncio.sleep(0.25)
    assert await store.begin(COMPENSATION, "w2", MINUTE) is Turn.TAKEN
    assert await store.begin(ACTION, "frozen", MINUTE) is Turn.COMPENSATED


async def test_an_action_that_failed_retryably_is_refused_after_its_compensation(
    store: Any,
) -> None:
    assert await store.begin(ACTION, "w1", MINUTE) is Turn.TAKEN
    await store.finish(ACTION, "w1", None)
    assert await store.begin(COMPENSATION, "w2", MINUTE) is Turn.TAKEN
    assert await store.begin(ACTION, "w1", MINUTE) is Turn.COMPENSATED


# -- a reply recorded for one command (one attempt of a key) ---------------------------


async def test_a_reply_recorded_for_one_command_answers_that_command_alone(
    store: Any,
) -> None:
    """A retryable failure: a redelivery of its command gets it again, instead of a
    second run that might answer that command differently; the key's next
    command (another attempt) runs."""
    failed = b'{"error_type":"Timeout","retryable":true}'
    assert await store.begin(ACTION, "w1", MINUTE, command="a-1") is Turn.TAKEN
    await store.finish(ACTION, "w1", failed, command="a-1")
    assert await store.begin(ACTION, "w2", MINUTE, command="a-1") == RecordedReply(failed)
    assert await store.begin(ACTION, "w2", MINUTE, command="a-2") is Turn.TAKEN
    await store.finish(ACTION, "w2", b"done")
    # The first command keeps its answer; the key's reply answers the others.
    assert await store.begin(ACTION, "w3", MINUTE, command="a-1") == RecordedReply(failed)
    assert await store.begin(ACTION, "w3", MINUTE, command="a-3") == RecordedReply(b"done")
    assert await store.begin(ACTION, "w3", MINUTE) == RecordedReply(b"done")


async def test_a_reply_recorded_for_a_command_comes_before_the_compensation_fence(
    store: Any,
) -> None:
    failed = b'{"error_type":"Timeout","retryable":true}'
    assert await store.begin(ACTION, "w1", MINUTE, command="a-1") is Turn.TAKEN
    await store.finish(ACTION, "w1", failed, command="a-1")
    assert await store.begin(COMPENSATION, "w2", MINUTE, command="c-1") is Turn.TAKEN
    assert await store.begin(ACTION, "w1", MINUTE, command="a-1") == RecordedReply(failed)
    assert await store.begin(ACTION, "w1", MINUTE, command="a-2") is Turn.COMPENSATED
    # Keys of no step have their commands' replies too.
    assert await store.begin("k", "w1", MINUTE, command="k-1") is Turn.TAKEN
    await store.finish("k", "w1", b"failed", command="k-1")
    assert await store.begin("k", "w2", MINUTE, command="k-1") == RecordedReply(b"failed")
    assert await store.begin("k", "w2", MINUTE, command="k-2") is Turn.TAKEN


async def test_redis_keys_of_a_step_share_one_hash_tag(ns: str) -> None:
    client = await connect_redis()
    try:
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        assert await store.begin("o-1:ship:action", "w", MINUTE) is Turn.TAKEN
        await store.finish("o-1:ship:action", "w", b"shipped")
        assert await store.begin("o-1:ship:compensation", "w", MINUTE) is Turn.TAKEN
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{ns}:*")])
        assert keys == [
            f"{ns}:claim:{{o-1:ship}}:compensation",
            f"{ns}:reply:{{o-1:ship}}:action",
            f"{ns}:tomb:{{o-1:ship}}",
        ]
        assert 0 < await client.ttl(f"{ns}:tomb:{{o-1:ship}}") <= 90
        # A reply recorded for one command sits in the step's slot, kept as long.
        assert await store.begin("o-1:pay:action", "w", MINUTE, command="o-1:pay:1") is Turn.TAKEN
        await store.finish("o-1:pay:action", "w", b"failed", command="o-1:pay:1")
        [recorded] = [k.decode() async for k in client.scan_iter(match=f"{ns}:command:*")]
        assert recorded == f"{ns}:command:{{o-1:pay}}:action:o-1:pay:1"
        assert key_slot(recorded.encode()) == key_slot(f"{ns}:reply:{{o-1:pay}}:action".encode())
        assert 0 < await client.ttl(recorded) <= 90
        assert [k async for k in client.scan_iter(match=f"{ns}:*{{o-1:pay}}*")] == [
            recorded.encode()
        ], "the key's own reply is not recorded, its claim is given back"
    finally:
        await drop_namespace(client, ns)
        await client.aclose()


async def test_redis_replies_under_the_earlier_key_shape_are_still_read(ns: str) -> None:
    """A deployment upgraded mid-saga: a retry finds the reply recorded before."""
    client = await connect_redis()
    try:
        await client.set(f"{ns}:reply:{{o-1:ship:action}}", b"from-before", ex=90)
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        assert await store.begin("o-1:ship:action", "w", MINUTE) == RecordedReply(b"from-before")
    finally:
        await drop_namespace(client, ns)
        await client.aclose()


async def test_redis_outages_are_reported_as_store_unavailable(ns: str) -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        store = RedisIdempotencyStore(client, namespace=ns, ttl=timedelta(seconds=90))
        with pytest.raises(StoreUnavailableError):
            await store.begin("o-1:ship:action", "w", MINUTE)
        with pytest.raises(StoreUnavailableError):
            await store.finish("o-1:ship:action", "w", b"r")
    finally:
        await client.aclose()
