"""Each ACL user of ``saga acl --export`` can run what its role runs, on a real Redis.

The participant's user is checked against every key the reply store writes:
a key family added to the store without its pattern in the user would make
every participant of a deployment with ACL users fail with NOPERM.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from servers import REDIS_URL

from contracts import StepKind
from coordinator.adapters.redis import RedisIdempotencyStore
from coordinator.adapters.redis._acl import acl_user
from coordinator.ports import RecordedReply, Turn

LEASE = timedelta(seconds=30)


@pytest.fixture
async def participant(ns: str, redis_client: Redis) -> AsyncIterator[Redis]:
    """A client logged in as the namespace's participant user."""
    password = uuid.uuid4().hex
    line = acl_user(ns, "participant", password)
    rules = line.split(" ", 2)[2].split()  # after "user <name>"
    name = f"{ns}.participant"
    await redis_client.execute_command("ACL", "SETUSER", name, "reset", *rules)
    client = Redis.from_url(REDIS_URL, username=name, password=password)
    try:
        yield client
    finally:
        await client.aclose()
        await redis_client.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize("kind", ["action", "compensation"])
async def test_the_participant_user_runs_the_reply_store(
    ns: str, participant: Redis, kind: StepKind
) -> None:
    store = RedisIdempotencyStore(participant, namespace=ns, ttl=timedelta(minutes=5))
    key = f"o-1:reserve:{kind}"
    command = f"o-1:reserve:{kind}:1"
    assert await store.begin(key, "w1", LEASE, command=command) is Turn.TAKEN
    # A retryable failure is recorded for its command alone.
    await store.finish(key, "w1", b'{"failed": true}', command=command)
    assert await store.begin(key, "w1", LEASE, command=command) == RecordedReply(
        body=b'{"failed": true}'
    )
    # The next attempt takes the key and records its reply for the key.
    assert await store.begin(key, "w1", LEASE, command=f"{key}:2") is Turn.TAKEN
    await store.finish(key, "w1", b'{"ok": true}', command=None)
    assert await store.begin(key, "w2", LEASE, command=f"{key}:3") == RecordedReply(
        body=b'{"ok": true}'
    )
