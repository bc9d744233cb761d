"""A participant worker through outages of its reply store (real Redis behind a
client that fails with redis-py's own exceptions), and the rule that no action
runs after its undo."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from flaky import FlakyRedis
from redis.asyncio import Redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MovedError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from test_participant_worker import NOW, Inventory, RecordingDelivery, command

from contracts import DEFAULT_CODEC, TaskCompleted, TaskFailed
from coordinator.adapters.memory._idempotency import MemoryIdempotencyStore
from coordinator.adapters.memory._transport import MemoryTransport
from coordinator.adapters.redis import RedisIdempotencyStore
from coordinator.ports import Delivery, RecordedReply, Turn
from participants import ALREADY_COMPENSATED, ParticipantWorker

HOUR = timedelta(hours=1)
OUTAGE = 20.0  # seconds of the virtual clock

OUTAGES = [
    BusyLoadingError("Redis is loading the dataset in memory"),
    RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    RedisConnectionError("Connection reset by peer"),
    RedisTimeoutError("Timeout reading from socket"),
    ReadOnlyError("You can't write against a read only replica."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    ClusterDownError("The cluster is down"),
    ClusterError("TTL exhausted."),
    MovedError("3999 127.0.0.1:7001"),
    ConnectionRefusedError(111, "Connection refused"),
]


class VirtualClock:
    """Sleeps take no time; ``elapsed`` is what they would have taken."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.elapsed)

    async def sleep(self, delay: timedelta) -> None:
        seconds = delay.total_seconds()
        self.elapsed += seconds
        self.slept.append(seconds)
        await asyncio.sleep(0)


def evalsha_of(store: RedisIdempotencyStore, which: str, args: tuple[object, ...]) -> bool:
    script = store._begin if which == "begin" else store._finish
    return args[:2] == ("EVALSHA", script.sha)


async def worker_through(
    redis_client: Redis, ns: str, inventory: Inventory, fails: str, error: BaseException
) -> tuple[MemoryTransport, VirtualClock, list[int], RedisIdempotencyStore]:
    """Runs one command through a worker whose store fails ``fails`` (begin,
    finish or both) for OUTAGE seconds; the transport dead-letters a command
    on its fifth delivery, as the example deployment's queues do."""
    clock = VirtualClock()
    store_box: list[RedisIdempotencyStore] = []

    def fault(args: tuple[object, ...]) -> BaseException | None:
        hit = fails == "both" or evalsha_of(store_box[0], fails, args)
        return error if hit and clock.elapsed < OUTAGE else None

    store = RedisIdempotencyStore(FlakyRedis(redis_client, fault), namespace=ns, ttl=HOUR)  # type: ignore[arg-type]
    store_box.append(store)
    memory = MemoryTransport(delivery_limit=5)
    await memory.declare("replies", "events", "#")
    worker = ParticipantWorker(
        inventory.service(), transport=memory, idempotency=store, clock=clock
    )
    counts: list[int] = []

    async def observed(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        await worker.handle(delivery)

    await memory.subscribe("inventory.commands", "commands", "inventory.*", observed)
    cmd = command()
    await memory.publish(
        "commands", cmd.routing_key, DEFAULT_CODEC.encode(cmd), message_id=cmd.message_id
    )
    await memory.drain()
    return memory, clock, counts, store


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_outage_while_taking_the_key_holds_the_delivery(
    redis_client: Redis, ns: str, error: BaseException
) -> None:
    """LOADING after a restart, refused connections, failovers: the command waits
    for the store instead of spending its deliveries, and runs once it is back."""
    inventory = Inventory()
    memory, clock, counts, _ = await worker_through(redis_client, ns, inventory, "begin", error)
    assert memory.dead_letters == []
    assert counts == [1], "held, never requeued"
    [body] = memory.ready("replies")
    assert isinstance(DEFAULT_CODEC.decode_inbound(body), TaskCompleted)
    assert inventory.effects == [("A-1", 2)]
    assert clock.elapsed >= OUTAGE
    # Capped exponential backoff: 50 ms doubling to 2 s, with a little jitter.
    assert 0.05 <= clock.slept[0] <= 0.1
    assert clock.slept[1] > clock.slept[0]
    assert max(clock.slept) <= 2.05  # 2 s and at most 50 ms of jitter


async def test_a_20s_outage_at_every_call_neither_dead_letters_nor_repeats(
    redis_client: Redis, ns: str
) -> None:
    """Redis unreachable for 20 s: before, every attempt was requeued at once and
    dead-lettered on its fifth delivery within milliseconds."""
    inventory = Inventory()
    memory, _clock, counts, _ = await worker_through(
        redis_client, ns, inventory, "both", RedisConnectionError("Connection refused")
    )
    assert memory.dead_letters == []
    assert counts == [1]
    assert len(memory.ready("replies")) == 1
    assert inventory.effects == [("A-1", 2)]


async def test_an_outage_while_recording_the_reply_keeps_the_effect_single(
    redis_client: Redis, ns: str
) -> None:
    """The handler ran; the record waits for the store, then lands: a retry is
    answered from it instead of running the handler again."""
    inventory = Inventory()
    memory, clock, counts, store = await worker_through(
        redis_client, ns, inventory, "finish", BusyLoadingError("loading")
    )
    assert counts == [1]
    assert memory.dead_letters == []
    assert clock.elapsed >= OUTAGE
    recorded = await store.begin(command().idempotency_key, "someone-else", HOUR)
    assert isinstance(recorded, RecordedReply)
    assert inventory.effects == [("A-1", 2)]
    assert len(inventory.calls) == 1


async def test_a_store_error_that_is_no_outage_requeues(redis_client: Redis, ns: str) -> None:
    """A wrong password fails the same way every time: no holding for it."""
    from redis.exceptions import AuthenticationError

    inventory = Inventory()
    _memory, _clock, counts, _ = await worker_through(
        redis_client, ns, inventory, "begin", AuthenticationError("invalid password")
    )
    assert counts[:2] == [1, 2], "requeued: it spends its deliveries"
    assert inventory.calls == []


async def test_stopping_during_an_outage_gives_the_delivery_back() -> None:
    inventory = Inventory()

    class Down:
        async def begin(
            self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
        ) -> RecordedReply | Turn:
            from coordinator._errors import StoreUnavailableError

            raise StoreUnavailableError("Redis is unavailable")

        async def finish(
            self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
        ) -> None:
            raise AssertionError("unreachable")

    memory = MemoryTransport()
    worker = ParticipantWorker(inventory.service(), transport=memory, idempotency=Down())
    await worker.start()
    cmd = command()
    await memory.publish(
        "commands", cmd.routing_key, DEFAULT_CODEC.encode(cmd), message_id=cmd.message_id
    )
    for _ in range(20):  # let it retry a few times on the real clock
        await asyncio.sleep(0.01)
    await asyncio.wait_for(worker.stop(), 5)
    assert memory.dead_letters == []
    assert len(memory.ready("inventory.commands")) == 1, "back in the queue"
    assert inventory.calls == []


# -- no action after its undo --------------------------------------------------------


class FrozenBeforeBegin:
    """A worker's store whose first ``begin`` waits for ``thaw``: the worker got
    the command and stalled (SIGSTOP, a long pause) before it took the key."""

    def __init__(self, inner: MemoryIdempotencyStore) -> None:
        self.inner = inner
        self.thaw = asyncio.Event()
        self.frozen = asyncio.Event()

    async def begin(
        self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
    ) -> object:
        if not self.thaw.is_set():
            self.frozen.set()
            await self.thaw.wait()
        return await self.inner.begin(key, holder, ttl, command=command)

    async def finish(
        self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
    ) -> None:
        await self.inner.finish(key, holder, reply, command=command)


def replies_of(memory: MemoryTransport) -> list[TaskCompleted | TaskFailed]:
    found = []
    for body in memory.ready("replies"):
        reply = DEFAULT_CODEC.decode_inbound(body)
        assert isinstance(reply, TaskCompleted | TaskFailed)
        found.append(reply)
    return found


async def test_an_action_not_started_before_its_compensation_is_refused() -> None:
    inventory = Inventory()
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    shared = MemoryIdempotencyStore()
    frozen_store = FrozenBeforeBegin(shared)
    stalled = ParticipantWorker(inventory.service(), transport=memory, idempotency=frozen_store)  # type: ignore[arg-type]
    other = ParticipantWorker(inventory.service(), transport=memory, idempotency=shared)
    log: list[str] = []
    action = command()
    holding = asyncio.create_task(
        stalled.handle(RecordingDelivery(DEFAULT_CODEC.encode(action), log))
    )
    await frozen_store.frozen.wait()
    # The coordinator timed the action out and compensates; another worker undoes it.
    undo = command("Release", {"hold_id": "h-1"}, kind="compensation")
    await other.handle(RecordingDelivery(DEFAULT_CODEC.encode(undo), log))
    frozen_store.thaw.set()
    await asyncio.wait_for(holding, 5)

    assert inventory.calls == [undo.message_id], "the action's handler never ran"
    assert inventory.effects == []
    assert log == ["ack", "ack"]
    compensated, refused = replies_of(memory)
    assert (compensated.kind, type(compensated)) == ("compensation", TaskCompleted)
    assert isinstance(refused, TaskFailed)
    assert (refused.kind, refused.error_type, refused.retryable) == (
        "action",
        ALREADY_COMPENSATED,
        False,
    )
    assert "reserve" in refused.error_message
    # A redelivery or a retry of the action is refused the same way.
    retry = command(attempt=2)
    await other.handle(RecordingDelivery(DEFAULT_CODEC.encode(retry), log))
    assert replies_of(memory)[-1].error_type == ALREADY_COMPENSATED  # type: ignore[union-attr]
    assert inventory.effects == []


async def test_a_compensation_waits_for_its_running_action_then_runs() -> None:
    inventory = Inventory()
    inventory.gate = asyncio.Event()
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    shared = MemoryIdempotencyStore()
    clock = VirtualClock()
    first = ParticipantWorker(inventory.service(), transport=memory, idempotency=shared)
    second = ParticipantWorker(
        inventory.service(), transport=memory, idempotency=shared, clock=clock
    )
    log: list[str] = []
    action = command()
    undo = command("Release", {"hold_id": "h-1"}, kind="compensation")
    acting = asyncio.create_task(first.handle(RecordingDelivery(DEFAULT_CODEC.encode(action), log)))
    while not inventory.calls:
        await asyncio.sleep(0)
    undoing = asyncio.create_task(second.handle(RecordingDelivery(DEFAULT_CODEC.encode(undo), log)))
    while len(clock.slept) < 3:  # it polls while the action is held
        await asyncio.sleep(0)
    assert inventory.calls == [action.message_id]
    assert not undoing.done()
    inventory.gate.set()
    await asyncio.wait_for(asyncio.gather(acting, undoing), 5)
    assert inventory.calls == [action.message_id, undo.message_id]
    assert [type(r).__name__ for r in replies_of(memory)] == ["TaskCompleted", "TaskCompleted"]
    # The action's recorded reply still answers its duplicates.
    await first.handle(RecordingDelivery(DEFAULT_CODEC.encode(action), log))
    assert isinstance(replies_of(memory)[-1], TaskCompleted)
    assert len(inventory.effects) == 1


async def test_a_hold_that_cannot_be_renewed_for_a_lease_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The renewals go on through an outage, and once it has lasted a lease the
    worker says that another worker may run the command too; the reply is
    recorded when the store is back."""
    from coordinator._errors import StoreUnavailableError

    class RenewalsFail:
        def __init__(self) -> None:
            self.inner = MemoryIdempotencyStore()
            self.down = False

        async def begin(
            self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
        ) -> object:
            if self.down:
                raise StoreUnavailableError("Redis is unavailable")
            return await self.inner.begin(key, holder, ttl, command=command)

        async def finish(
            self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
        ) -> None:
            await self.inner.finish(key, holder, reply, command=command)

    inventory = Inventory()
    inventory.gate = asyncio.Event()
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    store = RenewalsFail()
    worker = ParticipantWorker(
        inventory.service(),
        transport=memory,
        idempotency=store,  # type: ignore[arg-type]
        lease=timedelta(milliseconds=150),
    )
    log: list[str] = []
    handling = asyncio.create_task(
        worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(command()), log))
    )
    while not inventory.calls:
        await asyncio.sleep(0)
    store.down = True
    while "may have lapsed" not in caplog.text:
        await asyncio.sleep(0.01)
    store.down = False
    inventory.gate.set()
    await asyncio.wait_for(handling, 5)
    assert log == ["ack"]
    assert command().idempotency_key in store.inner
