"""ParticipantWorker on the memory transport: replies, dedupe, failures, dead letters, acks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from contracts import DEFAULT_CODEC, Command, Reply, StepKind, TaskCompleted, TaskFailed
from coordinator.adapters.memory._idempotency import MemoryIdempotencyStore
from coordinator.adapters.memory._transport import MemoryTransport
from coordinator.ports import Delivery, Exchange, Handler, RecordedReply, Subscription, Turn
from participants._errors import Failure
from participants._service import Context, Service
from participants._worker import ParticipantWorker

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SAGA = "order-42"


class Reserve(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Reserved(msgspec.Struct, frozen=True):
    hold_id: str
    qty: int


class Release(msgspec.Struct, frozen=True):
    hold_id: str


class Charge(msgspec.Struct, frozen=True):
    cents: int


class CardDeclined(Failure):
    retryable = False


class FixedClock:
    def now(self) -> datetime:
        return NOW

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(0)


@dataclass
class Inventory:
    """A service that counts its effects; ``gate`` holds reserve() until set."""

    stock: dict[str, int] = field(default_factory=lambda: {"A-1": 5})
    calls: list[str] = field(default_factory=list)
    effects: list[tuple[str, int]] = field(default_factory=list)
    contexts: list[Context] = field(default_factory=list)
    transient_faults: int = 0
    gate: asyncio.Event | None = None

    def service(self) -> Service:
        service = Service("inventory")

        @service.handles(Reserve)
        async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
            self.calls.append(ctx.message_id)
            self.contexts.append(ctx)
            if self.gate is not None:
                await self.gate.wait()
            if self.transient_faults:
                self.transient_faults -= 1
                raise ConnectionError("stock database unavailable")
            if self.stock.get(cmd.sku, 0) < cmd.qty:
                raise Failure("OutOfStock", f"{cmd.sku} is out of stock", retryable=False)
            self.stock[cmd.sku] -= cmd.qty
            self.effects.append((cmd.sku, cmd.qty))
            return Reserved(hold_id=f"hold-{ctx.saga_id}", qty=cmd.qty)

        @service.handles(Release)
        async def release(cmd: Release, ctx: Context) -> None:
            self.calls.append(ctx.message_id)

        @service.handles(Charge)
        async def charge(cmd: Charge, ctx: Context) -> None:
            raise CardDeclined("card ending 4242 was declined")

        return service


def command(
    name: str = "Reserve",
    payload: Mapping[str, object] | None = None,
    *,
    step: str = "reserve",
    attempt: int = 1,
    kind: StepKind = "action",
    service: str = "inventory",
) -> Command:
    return Command(
        message_id=f"{SAGA}:{step}:{kind}:{attempt}",
        idempotency_key=f"{SAGA}:{step}:{kind}",
        saga_id=SAGA,
        saga_name="place_order",
        saga_version=1,
        step=step,
        attempt=attempt,
        kind=kind,
        service=service,
        command=name,
        payload=dict(payload if payload is not None else {"sku": "A-1", "qty": 2}),
        causation_id=f"{SAGA}:start",
        sent_at=NOW,
    )


class Harness:
    def __init__(self, inventory: Inventory, transport: MemoryTransport | None = None) -> None:
        self.inventory = inventory
        self.memory = transport or MemoryTransport()
        self.store = MemoryIdempotencyStore()
        self.worker = ParticipantWorker(
            inventory.service(),
            transport=self.memory,
            idempotency=self.store,
            clock=FixedClock(),
        )

    async def send(self, cmd: Command, headers: Mapping[str, str] | None = None) -> None:
        await self.send_raw(DEFAULT_CODEC.encode(cmd), cmd.routing_key, cmd.message_id, headers)

    async def send_raw(
        self,
        body: bytes,
        routing_key: str = "inventory.Reserve",
        message_id: str = "raw",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        await self.memory.publish(
            "commands", routing_key, body, message_id=message_id, headers=headers
        )

    async def ask(self, cmd: Command) -> Reply:
        """Send ``cmd``, wait for the dust to settle, return the one new reply."""
        before = len(self.replies())
        await self.send(cmd)
        await self.memory.drain()
        replies = self.replies()
        assert len(replies) == before + 1, replies
        return replies[-1]

    def replies(self) -> list[Reply]:
        replies = []
        for body in self.memory.ready("replies"):
            reply = DEFAULT_CODEC.decode_inbound(body)
            assert isinstance(reply, TaskCompleted | TaskFailed)
            replies.append(reply)
        return replies


@pytest.fixture
def inventory() -> Inventory:
    return Inventory()


@pytest.fixture
async def harness(inventory: Inventory) -> Harness:
    harness = Harness(inventory)
    await harness.memory.declare("replies", "events", "#")  # the coordinator's queue, unconsumed
    await harness.worker.start()
    return harness


async def test_a_command_is_answered_with_its_result(harness: Harness) -> None:
    cmd = command()
    reply = await harness.ask(cmd)
    assert reply == TaskCompleted(
        message_id=f"{cmd.message_id}:reply",
        saga_id=SAGA,
        saga_name="place_order",
        step="reserve",
        attempt=1,
        kind="action",
        causation_id=cmd.message_id,
        sent_at=NOW,
        result={"hold_id": f"hold-{SAGA}", "qty": 2},
    )
    [published] = [p for p in harness.memory.published if p.exchange == "events"]
    assert (published.routing_key, published.message_id) == (
        "reply.inventory.place_order.TaskCompleted",
        reply.message_id,
    )
    assert harness.inventory.effects == [("A-1", 2)]
    assert harness.memory.dead_letters == []
    assert harness.memory.ready("inventory.commands") == []


async def test_the_handler_gets_the_envelope_as_context(harness: Harness) -> None:
    cmd = command(attempt=3)
    await harness.ask(cmd)
    [ctx] = harness.inventory.contexts
    assert ctx == Context(
        saga_id=SAGA,
        saga_name="place_order",
        saga_version=1,
        step="reserve",
        attempt=3,
        kind="action",
        message_id=cmd.message_id,
        idempotency_key=cmd.idempotency_key,
        deadline=None,
    )


async def test_a_compensation_reply_keeps_its_kind(harness: Harness) -> None:
    reply = await harness.ask(command("Release", {"hold_id": "h-1"}, kind="compensation"))
    assert isinstance(reply, TaskCompleted)
    assert (reply.kind, reply.result) == ("compensation", {})


async def test_a_non_retryable_failure_is_recorded_and_replayed(harness: Harness) -> None:
    first = await harness.ask(command(payload={"sku": "A-1", "qty": 99}))
    assert isinstance(first, TaskFailed)
    assert (first.error_type, first.error_message, first.retryable) == (
        "OutOfStock",
        "A-1 is out of stock",
        False,
    )
    assert harness.memory.published[-1].routing_key == "reply.inventory.place_order.TaskFailed"
    assert f"{SAGA}:reserve:action" in harness.store

    harness.inventory.stock["A-1"] = 1000  # would succeed now, but the answer is given
    retry = await harness.ask(command(payload={"sku": "A-1", "qty": 99}, attempt=2))
    assert isinstance(retry, TaskFailed)
    assert (retry.error_type, retry.retryable, retry.attempt) == ("OutOfStock", False, 2)
    assert len(harness.inventory.calls) == 1
    assert harness.inventory.effects == []


async def test_only_the_outcome_is_recorded_not_the_envelope(harness: Harness) -> None:
    """The record answers any later attempt, so it keeps what the reply says and
    nothing of the command it answered (a smaller record per key)."""
    await harness.ask(command())
    await harness.ask(command("Charge", {"cents": 500}, step="charge"))
    records = {
        key: msgspec.json.decode(harness.store._replies[key])
        for key in (f"{SAGA}:reserve:action", f"{SAGA}:charge:action")
    }
    assert records == {
        f"{SAGA}:reserve:action": {"result": {"hold_id": f"hold-{SAGA}", "qty": 2}},
        f"{SAGA}:charge:action": {
            "error_type": "CardDeclined",
            "error_message": "card ending 4242 was declined",
        },
    }


async def test_a_failure_subclass_names_the_error(harness: Harness) -> None:
    reply = await harness.ask(command("Charge", {"cents": 500}, step="charge"))
    assert isinstance(reply, TaskFailed)
    assert (reply.error_type, reply.error_message, reply.retryable) == (
        "CardDeclined",
        "card ending 4242 was declined",
        False,
    )


async def test_a_retryable_failure_is_not_recorded_for_the_key(harness: Harness) -> None:
    harness.inventory.transient_faults = 1
    first = await harness.ask(command())
    assert isinstance(first, TaskFailed)
    assert (first.error_type, first.error_message, first.retryable) == (
        "ConnectionError",
        "stock database unavailable",
        True,
    )
    assert len(harness.store) == 0

    retry = await harness.ask(command(attempt=2))
    assert isinstance(retry, TaskCompleted)
    assert retry.attempt == 2
    assert len(harness.inventory.calls) == 2
    assert harness.inventory.effects == [("A-1", 2)]


async def test_a_redelivered_command_gets_its_retryable_failure_again(harness: Harness) -> None:
    """The worker died after publishing a retryable failure and before acking the
    command, so the broker delivers that command again. Run again, the handler
    would now apply and answer the same command with a success, which nobody
    compensates if the saga has turned back meanwhile; the command gets its
    failure again instead. The next attempt (another command, the same key) runs."""
    harness.inventory.transient_faults = 1
    first = await harness.ask(command())
    assert isinstance(first, TaskFailed)
    assert first.retryable

    again = await harness.ask(command())
    assert again == first
    assert harness.memory.published[-1].routing_key == "reply.inventory.place_order.TaskFailed"
    assert len(harness.inventory.calls) == 1
    assert harness.inventory.effects == []

    retry = await harness.ask(command(attempt=2))
    assert isinstance(retry, TaskCompleted)
    assert len(harness.inventory.calls) == 2
    assert harness.inventory.effects == [("A-1", 2)]
    assert await harness.ask(command()) == first, "attempt 1 keeps its answer"


async def test_a_duplicate_command_gets_the_recorded_reply(harness: Harness) -> None:
    first = await harness.ask(command())
    duplicate = await harness.ask(command())
    assert duplicate == first  # same id: the coordinator recognises it as a duplicate
    assert harness.inventory.effects == [("A-1", 2)]
    assert len(harness.inventory.calls) == 1


async def test_a_retry_after_success_gets_the_recorded_result(harness: Harness) -> None:
    first = await harness.ask(command())
    retry_cmd = command(attempt=2)
    retry = await harness.ask(retry_cmd)
    assert isinstance(first, TaskCompleted)
    assert isinstance(retry, TaskCompleted)
    assert retry.result == first.result
    assert (retry.message_id, retry.causation_id, retry.attempt) == (
        f"{retry_cmd.message_id}:reply",
        retry_cmd.message_id,
        2,
    )
    assert harness.inventory.effects == [("A-1", 2)]
    assert len(harness.inventory.calls) == 1


async def test_concurrent_duplicates_run_the_handler_once(
    harness: Harness, inventory: Inventory
) -> None:
    inventory.gate = asyncio.Event()
    await harness.send(command())
    await harness.send(command())
    await harness.send(command(attempt=2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(inventory.calls) == 1  # the others wait for the key
    inventory.gate.set()
    await harness.memory.drain()
    replies = harness.replies()
    assert [r.attempt for r in replies] == [1, 1, 2]
    assert all(isinstance(r, TaskCompleted) and r.result["qty"] == 2 for r in replies)
    assert inventory.effects == [("A-1", 2)]
    assert len(harness.worker._locks) == 0  # no lock left behind


async def test_different_keys_run_concurrently(harness: Harness, inventory: Inventory) -> None:
    inventory.gate = asyncio.Event()
    await harness.send(command(step="a"))
    await harness.send(command(step="b"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(inventory.calls) == 2
    inventory.gate.set()
    await harness.memory.drain()
    assert len(harness.replies()) == 2


@pytest.mark.parametrize(
    ("body", "routing_key", "reason"),
    [
        (b"{not json", "inventory.Reserve", "malformed_json"),
        (b'{"type": "Command", "saga_id": 7}', "inventory.Reserve", "schema_mismatch"),
        (
            DEFAULT_CODEC.encode(
                TaskCompleted(
                    message_id="r",
                    saga_id="s",
                    saga_name="n",
                    step="x",
                    attempt=1,
                    kind="action",
                    causation_id="c",
                    sent_at=NOW,
                )
            ),
            "inventory.Reserve",
            "unknown_type",
        ),
        (DEFAULT_CODEC.encode(command("Frobnicate")), "inventory.Frobnicate", "unknown_command"),
        (DEFAULT_CODEC.encode(command(service="payments")), "inventory.Reserve", "unknown_command"),
    ],
    ids=["malformed", "wrong-schema", "not-a-command", "unknown-command", "other-service"],
)
async def test_undecodable_or_unknown_commands_are_dead_lettered(
    harness: Harness, body: bytes, routing_key: str, reason: str
) -> None:
    await harness.send_raw(body, routing_key)
    await harness.memory.drain()
    [dead] = harness.memory.dead_letters
    assert (dead.queue, dead.reason, dead.body) == ("inventory.commands", reason, body)
    assert dead.headers["x-death-reason"] == reason
    assert dead.headers["x-death-detail"]
    assert harness.replies() == []
    assert harness.inventory.calls == []
    assert harness.memory.handler_errors == []

    # The worker keeps working.
    assert isinstance(await harness.ask(command()), TaskCompleted)


async def test_unknown_command_detail_lists_the_known_ones(harness: Harness) -> None:
    await harness.send(command("Frobnicate"))
    await harness.memory.drain()
    [dead] = harness.memory.dead_letters
    assert "Frobnicate" in dead.detail
    assert "Charge, Release, Reserve" in dead.detail


async def test_a_payload_of_the_wrong_shape_is_an_invalid_command(harness: Harness) -> None:
    reply = await harness.ask(command(payload={"sku": "A-1", "qty": "two"}))
    assert isinstance(reply, TaskFailed)
    assert (reply.error_type, reply.retryable) == ("InvalidCommand", False)
    assert "Reserve" in reply.error_message
    assert "$.qty" in reply.error_message
    assert harness.inventory.calls == []
    assert len(harness.store) == 0  # nothing ran; a fixed deployment may answer differently
    assert await harness.ask(command(payload={"sku": "A-1", "qty": "two"})) == reply


async def test_trace_headers_travel_to_the_reply(harness: Harness) -> None:
    await harness.send(command(), headers={"traceparent": "00-abc-def-01", "other": "x"})
    await harness.memory.drain()
    [published] = [p for p in harness.memory.published if p.exchange == "events"]
    assert dict(published.headers) == {"traceparent": "00-abc-def-01"}


async def test_an_unencodable_result_is_dead_lettered_without_a_reply() -> None:
    service = Service("inventory")

    @service.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
        return 42  # type: ignore[return-value]

    transport = MemoryTransport()
    await transport.declare("replies", "events", "#")
    store = MemoryIdempotencyStore()
    async with ParticipantWorker(service, transport=transport, idempotency=store):
        cmd = command()
        await transport.publish(
            "commands", cmd.routing_key, DEFAULT_CODEC.encode(cmd), message_id=cmd.message_id
        )
        await transport.drain()
    [dead] = transport.dead_letters
    assert dead.reason == "invalid_result"
    assert "int" in dead.detail
    assert transport.ready("replies") == []
    assert len(store) == 0


class FailingOnce:
    """A transport whose first publish of a reply fails, as a lost connection would."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.failed = 0
        self.user = inner.user

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
        user_id: str | None = None,
    ) -> None:
        if exchange == "events" and not self.failed:
            self.failed += 1
            raise ConnectionError("connection reset by peer")
        await self.inner.publish(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers=headers,
            mandatory=mandatory,
            user_id=user_id,
        )

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        return await self.inner.subscribe(queue, exchange, pattern, handler, prefetch=prefetch)


async def test_the_delivery_is_acked_only_after_the_reply_was_published(
    inventory: Inventory,
) -> None:
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    transport = FailingOnce(memory)
    store = MemoryIdempotencyStore()
    counts: list[int] = []
    worker = ParticipantWorker(
        inventory.service(), transport=transport, idempotency=store, clock=FixedClock()
    )

    async def observed(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        await worker.handle(delivery)

    await memory.subscribe("inventory.commands", "commands", "inventory.*", observed)
    cmd = command()
    await memory.publish(
        "commands", cmd.routing_key, DEFAULT_CODEC.encode(cmd), message_id=cmd.message_id
    )
    await memory.drain()
    assert transport.failed == 1
    # The reply was recorded, so the publish is retried while the delivery is held:
    # a broker reconnect does not spend the command's delivery limit.
    assert counts == [1]
    [body] = memory.ready("replies")
    reply = DEFAULT_CODEC.decode_inbound(body)
    assert isinstance(reply, TaskCompleted)
    assert reply.message_id == f"{cmd.message_id}:reply"
    assert inventory.effects == [("A-1", 2)]
    assert len(inventory.calls) == 1
    assert memory.dead_letters == []


@dataclass
class RecordingDelivery:
    body: bytes
    log: list[str]
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery_count: int = 1
    exchange: str = "commands"
    routing_key: str = "inventory.Reserve"
    user_id: str | None = None

    async def ack(self) -> None:
        self.log.append("ack")

    async def requeue(self) -> None:
        self.log.append("requeue")

    async def dead_letter(self, reason: str, detail: str) -> None:
        self.log.append(f"dead_letter:{reason}")


class RecordingStore:
    def __init__(self, log: list[str], *, record_takes: float = 0.0) -> None:
        self.inner = MemoryIdempotencyStore()
        self.log = log
        self.record_takes = record_takes

    async def begin(
        self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
    ) -> RecordedReply | Turn:
        return await self.inner.begin(key, holder, ttl, command=command)

    async def finish(
        self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
    ) -> None:
        await asyncio.sleep(self.record_takes)
        if reply is not None:
            self.log.append("record")
        await self.inner.finish(key, holder, reply, command=command)


class RecordingTransport(FailingOnce):
    def __init__(self, inner: MemoryTransport, log: list[str]) -> None:
        super().__init__(inner)
        self.failed = 1  # never fail
        self.log = log

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
        user_id: str | None = None,
    ) -> None:
        self.log.append("publish")
        await super().publish(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers=headers,
            mandatory=mandatory,
            user_id=user_id,
        )


async def logged_worker(inventory: Inventory, log: list[str]) -> ParticipantWorker:
    """A worker whose publishes, records (each taking 50 ms) and acks are logged in order."""
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    return ParticipantWorker(
        inventory.service(),
        transport=RecordingTransport(memory, log),
        idempotency=RecordingStore(log, record_takes=0.05),
    )


async def test_record_and_publish_go_out_together_and_the_ack_waits_for_both(
    inventory: Inventory,
) -> None:
    log: list[str] = []
    worker = await logged_worker(inventory, log)
    await worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(command()), log))
    # The publish did not wait for the slow record; the ack waited for it.
    assert log == ["publish", "record", "ack"]

    log.clear()
    await worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(command(attempt=2)), log))
    assert log == ["publish", "ack"]  # answered from the record


async def test_a_retryable_failure_is_recorded_for_its_command_before_it_is_published(
    inventory: Inventory,
) -> None:
    """Published first, a failure could be followed by a crash before its record
    landed, and the redelivered command would run the handler again."""
    log: list[str] = []
    worker = await logged_worker(inventory, log)
    inventory.transient_faults = 1
    await worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(command()), log))
    assert log == ["record", "publish", "ack"]


async def test_a_store_error_that_is_not_an_outage_requeues(inventory: Inventory) -> None:
    """Only ``StoreUnavailableError`` (what the adapters raise for an outage) holds
    the delivery; anything else a store raises is a fault of its own."""

    class BrokenStore:
        async def begin(
            self, key: str, holder: str, ttl: timedelta, *, command: str | None = None
        ) -> RecordedReply | Turn:
            raise ConnectionError("redis is down")

        async def finish(
            self, key: str, holder: str, reply: bytes | None, *, command: str | None = None
        ) -> None:
            raise AssertionError("unreachable")

    log: list[str] = []
    worker = ParticipantWorker(
        inventory.service(), transport=MemoryTransport(), idempotency=BrokenStore()
    )
    await worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(command()), log))
    assert log == ["requeue"]
    assert inventory.calls == []


async def test_start_and_stop(inventory: Inventory) -> None:
    transport = MemoryTransport()
    await transport.declare("replies", "events", "#")
    worker = ParticipantWorker(
        inventory.service(), transport=transport, idempotency=MemoryIdempotencyStore()
    )
    assert worker.queue == "inventory.commands"
    await worker.start()
    with pytest.raises(RuntimeError, match="already running"):
        await worker.start()
    await worker.stop()
    await worker.stop()  # idempotent

    # The queue outlives the worker; a restarted worker picks up what waited.
    cmd = command()
    await transport.publish(
        "commands", cmd.routing_key, DEFAULT_CODEC.encode(cmd), message_id=cmd.message_id
    )
    assert inventory.calls == []
    await worker.start()
    await transport.drain()
    assert len(inventory.calls) == 1
    assert len(transport.ready("replies")) == 1
    await worker.stop()


async def test_a_key_claimed_by_another_worker_waits_for_its_reply(inventory: Inventory) -> None:
    """Two worker processes got the same command (a redelivery after a crash, say):
    the second waits for the first one's recorded reply and never runs the handler."""
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    shared = MemoryIdempotencyStore()
    cmd = command()
    taken = await shared.begin(cmd.idempotency_key, "the-other-worker", timedelta(minutes=1))
    assert taken is Turn.TAKEN
    worker = ParticipantWorker(inventory.service(), transport=memory, idempotency=shared)
    log: list[str] = []
    handling = asyncio.create_task(worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(cmd), log)))
    await asyncio.sleep(0.3)
    assert not handling.done(), "it must wait while the other worker holds the key"
    # the other worker finishes: records its reply and releases the key
    other = TaskCompleted(
        message_id="other:reply",
        saga_id=cmd.saga_id,
        saga_name=cmd.saga_name,
        step=cmd.step,
        attempt=cmd.attempt,
        kind=cmd.kind,
        causation_id=cmd.message_id,
        sent_at=cmd.sent_at,
        result={"hold_id": "from-the-other"},
    )
    await shared.finish(cmd.idempotency_key, "the-other-worker", DEFAULT_CODEC.encode(other))
    await asyncio.wait_for(handling, 2)
    assert log == ["ack"]
    assert inventory.calls == []
    assert inventory.effects == []
    [reply] = [DEFAULT_CODEC.decode_inbound(b) for b in memory.ready("replies")]
    assert isinstance(reply, TaskCompleted)
    assert reply.result == {"hold_id": "from-the-other"}


async def test_an_expired_claim_is_taken_over(inventory: Inventory) -> None:
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    shared = MemoryIdempotencyStore()
    cmd = command()
    taken = await shared.begin(cmd.idempotency_key, "a-dead-worker", timedelta(milliseconds=50))
    assert taken is Turn.TAKEN
    worker = ParticipantWorker(inventory.service(), transport=memory, idempotency=shared)
    log: list[str] = []
    await asyncio.wait_for(worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(cmd), log)), 2)
    assert log == ["ack"]
    [reply] = [DEFAULT_CODEC.decode_inbound(b) for b in memory.ready("replies")]
    assert isinstance(reply, TaskCompleted)
    assert len(inventory.effects) == 1


async def test_a_running_handler_keeps_its_hold_past_the_lease(inventory: Inventory) -> None:
    """The hold is renewed while the handler runs: a handler that takes several
    leases is never run a second time by another worker meanwhile."""
    memory = MemoryTransport()
    await memory.declare("replies", "events", "#")
    shared = MemoryIdempotencyStore()
    inventory.gate = asyncio.Event()
    cmd = command()
    lease = timedelta(milliseconds=150)
    worker = ParticipantWorker(
        inventory.service(), transport=memory, idempotency=shared, lease=lease
    )
    log: list[str] = []
    handling = asyncio.create_task(worker.handle(RecordingDelivery(DEFAULT_CODEC.encode(cmd), log)))
    for _ in range(6):  # 0.6 s: four leases
        await asyncio.sleep(0.1)
        turn = await shared.begin(cmd.idempotency_key, "another-worker", lease)
        assert turn is Turn.HELD_ELSEWHERE
    inventory.gate.set()
    await asyncio.wait_for(handling, 2)
    assert log == ["ack"]
    assert len(inventory.effects) == 1
    # Finished: the key now answers with the recorded reply, to anyone.
    recorded = await shared.begin(cmd.idempotency_key, "another-worker", lease)
    assert isinstance(recorded, RecordedReply)
