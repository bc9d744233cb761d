"""The coordinator runtime over the in-memory adapters: bad input, duplicates,
the outbox relay and concurrent replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from contracts import DEFAULT_CODEC, StartSaga, TaskCompleted
from coordinator import Coordinator, StoreUnavailableError
from coordinator.adapters.memory import MemorySagaStore, MemoryTransport
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Line
from coordinator.ports import Commit, CommitResult, Delivery, Stored
from coordinator.testing import Harness, VirtualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        yield h


def start_message(saga_id: str, **input_: object) -> bytes:
    data: dict[str, object] = {"order_id": saga_id, "lines": [], "total_cents": 100}
    data.update(input_)
    return DEFAULT_CODEC.encode(
        StartSaga(
            message_id=f"m-{saga_id}", saga_id=saga_id, saga_name=saga.name, input=data, sent_at=T0
        )
    )


async def publish(h: Harness, body: bytes, message_id: str = "x") -> None:
    await h.transport.publish("events", "test", body, message_id=message_id)
    await h.settle()


async def test_start_saga_message_runs_the_saga(harness: Harness) -> None:
    await publish(harness, start_message("s1"))
    state = await harness.run_until_done("s1")
    assert state.status == "completed"
    assert harness.transport.dead_letters == []


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"{not json", "malformed_json", "malformed"),
        (b'{"type": "Teleport", "message_id": "1"}', "unknown_type", "Teleport"),
        (b'{"type": "Signal", "message_id": 1}', "schema_mismatch", "$.message_id"),
        (b"x" * (DEFAULT_CODEC.max_size + 1), "too_large", "limit"),
    ],
)
async def test_undecodable_input_is_dead_lettered_with_the_reason(
    harness: Harness, body: bytes, reason: str, detail: str
) -> None:
    await publish(harness, body)
    [dead] = harness.transport.dead_letters
    assert dead.reason == reason
    assert detail in dead.detail
    assert dead.headers["x-death-reason"] == reason
    assert dead.delivery_count == 1  # on first delivery, never retried
    # and the coordinator keeps working
    await publish(harness, start_message("after"))
    assert (await harness.run_until_done("after")).status == "completed"


async def test_unknown_saga_name_is_dead_lettered(harness: Harness) -> None:
    body = DEFAULT_CODEC.encode(
        StartSaga(message_id="m", saga_id="s", saga_name="no.such.saga", input={}, sent_at=T0)
    )
    await publish(harness, body)
    [dead] = harness.transport.dead_letters
    assert (dead.reason, "no.such.saga" in dead.detail) == ("unknown_saga", True)


async def test_input_that_does_not_fit_the_saga_data_is_dead_lettered(harness: Harness) -> None:
    await publish(harness, start_message("bad", total_cents="a lot"))
    [dead] = harness.transport.dead_letters
    assert dead.reason == "schema_mismatch"
    assert "total_cents" in dead.detail
    assert await harness.coordinator.load("bad") is None


async def test_reply_for_unknown_saga_instance_is_dead_lettered(harness: Harness) -> None:
    reply = TaskCompleted(
        message_id="r",
        saga_id="ghost",
        saga_name=saga.name,
        step="reserve",
        attempt=1,
        kind="action",
        causation_id="c",
        sent_at=T0,
    )
    await publish(harness, DEFAULT_CODEC.encode(reply))
    [dead] = harness.transport.dead_letters
    assert dead.reason == "unknown_saga"
    assert "ghost" in dead.detail


async def test_redelivered_reply_is_applied_once() -> None:
    """The same reply, delivered three times while its saga still waits for it,
    is applied once: one changed history line for it, and the saga moves on once.

    Without an inventory worker the real reply never comes, so the forged one is
    the first the saga sees. The core ignores a second reply to an answered
    attempt, and the store refuses a second commit of one message id: either
    alone keeps the copies out, so the test checks both."""
    clock = VirtualClock()
    ledger = Ledger()
    services = [s for s in build_services(ledger, clock) if s.name != "inventory"]
    async with Harness([saga], services, clock=clock) as h:
        commits: list[Commit] = []
        commit = h.store.commit

        async def spy(c: Commit) -> CommitResult:
            commits.append(c)
            return await commit(c)

        h.store.commit = spy  # type: ignore[method-assign]
        order = Order(order_id="d1", lines=[Line(sku="a", quantity=1)], total_cents=1)
        await h.start(saga.name, order, saga_id="d1")
        await h.settle()
        waiting = await h.state("d1")
        assert waiting.steps["reserve"].status == "dispatched"
        reply = TaskCompleted(
            message_id="d1:reserve:action:1:reply",
            saga_id="d1",
            saga_name=saga.name,
            step="reserve",
            attempt=1,
            kind="action",
            causation_id="d1:reserve:action:1",
            sent_at=T0,
            result={"hold_id": "h"},
        )
        for _ in range(3):
            await h.transport.publish(
                "events", "test", DEFAULT_CODEC.encode(reply), message_id=reply.message_id
            )
        await h.settle()
        lines = [
            e
            for e in await h.history("d1")
            if msgspec.json.decode(e.input).get("message_id") == reply.message_id
        ]
        assert [e.changed for e in lines] == [True, False, False]
        # The store refuses a second commit of one input by its dedupe id (the store
        # contract); the runtime's part is to use the message id and, for a reply,
        # its outcome as that id (test_reply_outcomes says why the outcome).
        [taken] = [c for c in commits if c.revision == waiting.revision + 1]
        assert taken.dedupe_id == f"{reply.message_id}:TaskCompleted"
        state = await h.run_until_done("d1")
        assert state.status == "completed"
        revisions = [e.revision for e in await h.history("d1") if e.changed]
        assert revisions == list(range(1, state.revision + 1))
        assert ledger.of("d1") == ["payments.charge", "shipping.book"]
        assert h.transport.dead_letters == []


async def test_commands_left_in_the_outbox_are_relayed(harness: Harness) -> None:
    harness.transport.fail_next_publish(times=2)  # the started event and the first command
    await harness.start(
        saga.name,
        Order(order_id="o1", lines=[Line(sku="a", quantity=1)], total_cents=1),
        saga_id="o1",
    )
    await harness.settle()
    assert await harness.store.outbox_size() == 2
    assert (await harness.state("o1")).steps["reserve"].status == "dispatched"
    harness.clock.advance(timedelta(seconds=6))
    assert await harness.coordinator.relay() == 2
    state = await harness.run_until_done("o1")
    assert state.status == "completed"
    assert await harness.store.outbox_size() == 0


async def test_a_replica_dying_between_commit_and_publish_is_relayed_by_another() -> None:
    """Two replicas on one store: the first commits the start and dies before its
    commands leave (the publish fails, then it is stopped); the second's relay
    publishes them and the saga completes, each effect once."""
    clock = VirtualClock()
    ledger = Ledger()
    async with Harness([saga], build_services(ledger, clock), clock=clock) as h:
        other = Coordinator([saga], transport=h.transport, store=h.store, clock=clock)
        await other.start(loops=False)
        try:
            h.transport.fail_next_publish(times=2)  # the started event and the first command
            order = Order(order_id="r1", lines=[Line(sku="a", quantity=1)], total_cents=1)
            await h.start(saga.name, order, saga_id="r1")
            await h.coordinator.stop()
            await h.settle()
            assert await h.store.outbox_size() == 2
            assert (await h.state("r1")).steps["reserve"].status == "dispatched"
            assert ledger.of("r1") == []  # nothing left the dead replica

            clock.advance(timedelta(seconds=6))  # older than the relay's threshold
            assert await other.relay() == 2
            await h.settle()
            state = await other.load("r1")
            assert state is not None
            assert state.status == "completed"
        finally:
            await other.stop()
        assert await h.store.outbox_size() == 0
        revisions = [e.revision for e in await h.history("r1") if e.changed]
        assert revisions == list(range(1, state.revision + 1))
    assert ledger.of("r1") == ["inventory.reserve", "payments.charge", "shipping.book"]
    assert {k: n for k, n in ledger.runs.items() if n > 1} == {}


async def test_replicas_racing_on_one_saga_lose_no_update() -> None:
    """Two coordinators on one store; a parallel group's replies arrive at once."""
    clock = VirtualClock()
    ledger = Ledger()
    async with Harness([saga], build_services(ledger, clock), clock=clock) as h:
        other = Coordinator([saga], transport=h.transport, store=h.store, clock=clock)
        await other.start(loops=False)
        try:
            for i in range(20):
                await h.start(
                    saga.name,
                    Order(order_id=f"p{i}", lines=[], total_cents=5, member_id="m"),
                    saga_id=f"p{i}",
                )
            for i in range(20):
                assert (await h.run_until_done(f"p{i}")).status == "completed"
        finally:
            await other.stop()
    for i in range(20):
        assert ledger.of(f"p{i}") == [
            "inventory.reserve",
            "loyalty.award",
            "payments.charge",
            "shipping.book",
        ]


class YieldingStore:
    """A memory store that lets other tasks run between load and commit, as a
    network round trip would, and counts the conflicts it reports."""

    def __init__(self, inner: MemorySagaStore) -> None:
        self.inner = inner
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, saga_id: str) -> Stored | None:
        found = await self.inner.load(saga_id)
        await asyncio.sleep(0)
        return found

    async def commit(self, commit: Commit) -> CommitResult:
        result = await self.inner.commit(commit)
        self.conflicts += result == "conflict"
        return result


async def test_concurrent_replies_conflict_and_are_retried() -> None:
    clock = VirtualClock()
    transport = MemoryTransport()
    store = YieldingStore(MemorySagaStore())
    await transport.subscribe("sink", "commands", "#", _ack)
    replicas = [
        Coordinator([saga], transport=transport, store=store, clock=clock)  # type: ignore[arg-type]
        for _ in range(3)
    ]
    for replica in replicas:
        await replica.start(loops=False)
    try:
        await replicas[0].start_saga(
            saga.name, "c", {"order_id": "c", "lines": [], "total_cents": 5, "member_id": "m"}
        )
        await _reply(transport, "reserve", {"hold_id": "h"})
        await transport.drain()
        # both parallel branches answer at the same moment, to different replicas
        await asyncio.gather(
            _reply(transport, "charge", {"charge_id": "ch"}), _reply(transport, "points", {})
        )
        await transport.drain()
        state = await replicas[1].load("c")
        assert state is not None
        assert state.steps["charge"].status == "succeeded"
        assert state.steps["points"].status == "succeeded"
        assert state.steps["ship"].status == "dispatched"
        assert state.data.charge_id == "ch"
        assert store.conflicts >= 1, "the race must have happened for this test to mean anything"
    finally:
        for replica in replicas:
            await replica.stop()
        await transport.close()


async def _ack(delivery: Delivery) -> None:
    await delivery.ack()


async def _reply(transport: MemoryTransport, step: str, result: dict[str, object]) -> None:
    reply = TaskCompleted(
        message_id=f"c:{step}:reply",
        saga_id="c",
        saga_name=saga.name,
        step=step,
        attempt=1,
        kind="action",
        causation_id=f"c:{step}",
        sent_at=T0,
        result=result,
    )
    await transport.publish("events", "t", DEFAULT_CODEC.encode(reply), message_id=reply.message_id)


async def test_lifecycle_events_tell_other_services_the_outcome() -> None:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        seen: list[tuple[str, bytes]] = []

        async def watch(delivery: Delivery) -> None:
            seen.append((delivery.message_id, delivery.body))
            await delivery.ack()

        await h.transport.subscribe("audit", "lifecycle", "order.place.*", watch)
        for o in (
            Order(order_id="ok", lines=[], total_cents=1),
            Order(order_id="no", lines=[], total_cents=1, card="declined"),
        ):
            await h.start(saga.name, o, saga_id=o.order_id)
            await h.run_until_done(o.order_id)
        await h.settle()
        events = [DEFAULT_CODEC.decode_lifecycle(body) for _id, body in seen]
        assert [(e.saga_id, e.event) for e in events] == [
            ("ok", "started"),
            ("ok", "completed"),
            ("no", "started"),
            ("no", "compensated"),
        ]
        completed = events[1]
        assert completed.data["tracking_number"] == "trk-ok"
        assert "CardDeclined" in (events[3].reason or "")
        assert len({mid for mid, _ in seen}) == 4


async def test_announce_picks_the_lifecycle_events_published() -> None:
    clock = VirtualClock()
    outcomes = {"completed", "compensated", "failed", "cancelled"}
    async with Harness(
        [saga], build_services(Ledger(), clock), clock=clock, announce=outcomes
    ) as h:
        seen: list[str] = []

        async def watch(delivery: Delivery) -> None:
            seen.append(DEFAULT_CODEC.decode_lifecycle(delivery.body).event)
            await delivery.ack()

        await h.transport.subscribe("audit", "lifecycle", "order.place.*", watch)
        await h.start(saga.name, Order(order_id="q", lines=[], total_cents=1), saga_id="q")
        assert (await h.run_until_done("q")).status == "completed"
        await h.settle()
        assert seen == ["completed"]
        assert await h.store.outbox_size() == 0
        # The history still says what was decided.
        first = (await h.store.history("q"))[0]
        assert b'"event":"started"' in bytes(first.effects)


def test_announce_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="no lifecycle event begun"):
        Coordinator(
            [saga],
            transport=MemoryTransport(),
            store=MemorySagaStore(),
            clock=VirtualClock(),
            announce={"completed", "begun"},
        )


class FlakyStore(YieldingStore):
    """The store is down for the next ``outage`` calls."""

    def __init__(self, inner: MemorySagaStore, outage: int) -> None:
        super().__init__(inner)
        self.outage = outage

    def _maybe_down(self) -> None:
        if self.outage > 0:
            self.outage -= 1
            raise StoreUnavailableError("Redis is unavailable: restarting")

    async def load(self, saga_id: str) -> Stored | None:
        self._maybe_down()
        return await self.inner.load(saga_id)

    async def commit(self, commit: Commit) -> CommitResult:
        self._maybe_down()
        return await super().commit(commit)

    async def due(self, now: datetime, limit: int) -> Any:
        self._maybe_down()
        return await self.inner.due(now, limit)


async def test_a_store_outage_holds_the_message_instead_of_spending_deliveries() -> None:
    clock = VirtualClock()
    transport = MemoryTransport(delivery_limit=2)
    store = FlakyStore(MemorySagaStore(), outage=0)
    coordinator = Coordinator([saga], transport=transport, store=store, clock=clock)  # type: ignore[arg-type]
    await transport.subscribe("sink", "commands", "#", _ack)
    await coordinator.start(loops=False)
    try:
        store.outage = 6  # longer than the delivery limit would survive
        await transport.publish("events", "t", start_message("held"), message_id="m")
        for _ in range(50):
            await asyncio.sleep(0)
            clock.advance(timedelta(seconds=1))  # the backoff sleeps on the clock
        await transport.drain()
        assert transport.dead_letters == []
        state = await coordinator.load("held")
        assert state is not None
        assert state.steps["reserve"].status == "dispatched"
    finally:
        await coordinator.stop()
        await transport.close()


async def test_timer_and_relay_loops_survive_an_outage() -> None:
    clock = VirtualClock()
    transport = MemoryTransport()
    store = FlakyStore(MemorySagaStore(), outage=3)
    coordinator = Coordinator(
        [saga],
        transport=transport,
        store=store,
        clock=clock,  # type: ignore[arg-type]
        timer_interval=timedelta(seconds=1),
    )
    await coordinator.start()
    try:
        for _ in range(10):
            await asyncio.sleep(0)
            clock.advance(timedelta(seconds=1))
        assert store.outage == 0
        assert all(not task.done() for task in coordinator._loops)
    finally:
        await coordinator.stop()
        await transport.close()
