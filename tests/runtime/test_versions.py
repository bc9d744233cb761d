"""Definition versions: a saga stays on the version it started with; a coordinator
refuses to start without a version sagas are in flight on; a message for a saga
on a version a replica lacks is dead-lettered ``unknown_version`` and moved back,
and applied, when a coordinator with that version starts."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from contracts import DEFAULT_CODEC, Command, TaskCompleted, routes
from coordinator import Coordinator, Saga, UnknownSagaError, UnknownVersionError
from coordinator.adapters.memory import MemoryDeadLetters
from coordinator.core import SagaDefinition
from coordinator.testing import Harness


class V1(msgspec.Struct, frozen=True):
    id: str


class V2(msgspec.Struct, frozen=True):
    id: str
    amount: int  # required: a v1 state does not decode as v2


class Do(msgspec.Struct):
    id: str


def versioned(version: int, data: type[msgspec.Struct]) -> SagaDefinition[msgspec.Struct]:
    builder: Saga[msgspec.Struct] = Saga("versioned", data=data, version=version)
    return builder.define(
        builder.step(
            "a",
            service="svc",
            send=lambda d: Do(id=d.id),
            undo=lambda d: Do(id=d.id),
            timeout=timedelta(seconds=10),
        ),
        builder.step("b", service="svc", send=lambda d: Do(id=d.id), undo=lambda d: Do(id=d.id)),
    )


V1_SAGA = versioned(1, V1)
V2_SAGA = versioned(2, V2)


def commands(h: Harness) -> list[Command]:
    sent = [p.body for p in h.transport.published if p.exchange == "commands"]
    return [DEFAULT_CODEC.decode_command(body) for body in sent]


async def reply(h: Harness, command: Command) -> None:
    message = TaskCompleted(
        message_id=routes.reply_id(command.message_id),
        saga_id=command.saga_id,
        saga_name=command.saga_name,
        step=command.step,
        kind=command.kind,
        attempt=command.attempt,
        causation_id=command.message_id,
        sent_at=h.clock.now(),
    )
    await h.transport.publish(
        "events",
        routes.reply_key(command.service, command.saga_name, "TaskCompleted"),
        DEFAULT_CODEC.encode(message),
        message_id=message.message_id,
    )
    await h.settle()


async def test_a_saga_stays_on_its_version_while_a_newer_one_starts_new_sagas() -> None:
    async with Harness([V1_SAGA, V2_SAGA]) as h:
        old = Coordinator([V1_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        await old.start_saga("versioned", "s1", {"id": "s1"})
        await h.start("versioned", {"id": "s2", "amount": 5}, saga_id="s2")
        await h.settle()
        for command in commands(h):
            await reply(h, command)
        assert ((await h.state("s1")).version, (await h.state("s2")).version) == (1, 2)
        assert {e.version for e in await h.history("s1")} == {1}
        assert {e.version for e in await h.history("s2")} == {2}


async def test_a_coordinator_without_a_version_in_flight_refuses_to_start() -> None:
    async with Harness([V1_SAGA, V2_SAGA]) as h:
        old = Coordinator([V1_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        await old.start_saga("versioned", "s1", {"id": "s1"})
        await old.start_saga("versioned", "s2", {"id": "s2"})
        new = Coordinator([V2_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        with pytest.raises(UnknownVersionError) as refused:
            await new.start(loops=False)
        assert refused.value.versions == [("versioned", 1)]
        message = str(refused.value)
        assert "versioned v1 (2 sagas)" in message and "\n" not in message
        # Given both, it starts.
        both = Coordinator([V1_SAGA, V2_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        await both.start(loops=False)
        await both.stop()


async def test_ended_sagas_hold_no_version_back() -> None:
    async with Harness([V1_SAGA]) as h:
        await h.start("versioned", {"id": "s1"}, saga_id="s1")
        await h.settle()
        await reply(h, commands(h)[0])
        await reply(h, commands(h)[1])
        assert (await h.state("s1")).status == "completed"
        new = Coordinator([V2_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        await new.start(loops=False)
        await new.stop()


async def test_an_unknown_version_is_dead_lettered_then_moved_back_and_applied() -> None:
    # The running replica has v2 only: it started before any v1 saga was in flight.
    async with Harness([V2_SAGA]) as h:
        old = Coordinator([V1_SAGA], transport=h.transport, store=h.store, clock=h.clock)
        await old.start_saga("versioned", "s1", {"id": "s1"})  # a v1 replica still running
        await h.settle()
        [first] = commands(h)
        await reply(h, first)
        [dead] = h.transport.dead_letters
        assert (dead.reason, dead.queue) == ("unknown_version", routes.EVENTS_QUEUE)
        assert "'versioned' v1 is not loaded here (loaded: v2)" in dead.detail
        assert (await h.store.load("s1")) is not None
        assert len(await h.history("s1")) == 1  # nothing applied
        # Its timers wait for a replica that has the version: this one skips them.
        h.clock.advance(timedelta(seconds=11))
        assert await h.coordinator.fire_due_timers() == 0

        # A replica with v1 starts: it moves the letter back and takes it.
        await h.coordinator.stop()
        replica = Coordinator(
            [V1_SAGA, V2_SAGA],
            transport=h.transport,
            store=h.store,
            clock=h.clock,
            dead_letters=MemoryDeadLetters(h.transport),
        )
        await replica.start(loops=False)
        try:
            await h.settle()
            assert h.transport.dead_letters == []
            state = await replica.load("s1")
            assert state is not None
            assert (state.version, state.steps["a"].status) == (1, "succeeded")
            assert state.steps["b"].status == "dispatched"
        finally:
            await replica.stop()


async def test_a_start_for_an_unknown_name_is_still_unknown_saga() -> None:
    async with Harness([V2_SAGA]) as h:
        with pytest.raises(UnknownSagaError) as raised:
            await h.start("nope", {}, saga_id="x")
        assert not isinstance(raised.value, UnknownVersionError)
