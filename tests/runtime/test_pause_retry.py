"""An operator's pause, resume and retry through the runtime (the in-memory Harness).

The participant is the test itself: commands wait in the service's queue and the
test publishes the replies, so it decides exactly when a reply reaches the saga.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from contracts import (
    DEFAULT_CODEC,
    Command,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    TaskCompleted,
    TaskFailed,
    routes,
)
from coordinator import Retry, Saga, SagaRefusedError
from coordinator.testing import Harness

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Data(msgspec.Struct, frozen=True):
    id: str


class Do(msgspec.Struct):
    id: str


class Undo(msgspec.Struct):
    id: str


_saga: Saga[Data] = Saga("paused", data=Data, compensation_retry=Retry(attempts=1))
SAGA = _saga.define(
    _saga.step(
        "a",
        service="svc",
        send=lambda d: Do(id=d.id),
        undo=lambda d: Undo(id=d.id),
        timeout=timedelta(seconds=10),
        retry=Retry(attempts=2, backoff=timedelta(seconds=1)),
    ),
    _saga.step("b", service="svc", send=lambda d: Do(id=d.id), undo=lambda d: Undo(id=d.id)),
)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with Harness([SAGA]) as harness:
        yield harness


def commands(h: Harness) -> list[Command]:
    sent = [p.body for p in h.transport.published if p.exchange == "commands"]
    return [DEFAULT_CODEC.decode_command(body) for body in sent]


async def send(h: Harness, message: msgspec.Struct, routing_key: str, message_id: str) -> None:
    await h.transport.publish(
        "events", routing_key, DEFAULT_CODEC.encode(message), message_id=message_id
    )
    await h.settle()


async def reply(h: Harness, command: Command, *, ok: bool = True, retryable: bool = True) -> None:
    envelope = {
        "message_id": routes.reply_id(command.message_id),
        "saga_id": command.saga_id,
        "saga_name": command.saga_name,
        "step": command.step,
        "attempt": command.attempt,
        "kind": command.kind,
        "causation_id": command.message_id,
        "sent_at": h.clock.now(),
    }
    message: TaskCompleted | TaskFailed = (
        TaskCompleted(**envelope)  # type: ignore[arg-type]
        if ok
        else TaskFailed(
            **envelope,  # type: ignore[arg-type]
            error_type="Broken",
            error_message="broken",
            retryable=retryable,
        )
    )
    await send(
        h,
        message,
        routes.reply_key(command.service, command.saga_name, type(message).__name__),
        "r",
    )


def pause(saga_id: str, *, hold: bool = False) -> PauseSaga:
    return PauseSaga(
        message_id=f"pause-{saga_id}", saga_id=saga_id, by="alice", hold_deadline=hold, sent_at=T0
    )


async def test_a_paused_saga_records_a_reply_sends_nothing_and_goes_on_when_resumed(
    h: Harness,
) -> None:
    await h.start("paused", {"id": "x"}, saga_id="s1")
    [first] = commands(h)
    await send(h, pause("s1"), routes.PAUSE_KEY, "p1")
    assert (await h.state("s1")).paused
    await reply(h, first)
    state = await h.state("s1")
    assert state.paused and len(state.held) == 1
    assert state.steps["a"].status == "dispatched"
    assert commands(h) == [first]  # nothing sent
    entries = await h.history("s1")
    assert entries[-1].changed and "held until resumed" in entries[-1].note
    assert b'"by":"alice"' in bytes(entries[-2].input)  # who paused, in the history
    resume = ResumeSaga(message_id="resume-s1", saga_id="s1", by="bob", sent_at=T0)
    await send(h, resume, routes.RESUME_KEY, "u1")
    state = await h.state("s1")
    assert not state.paused and state.steps["a"].status == "succeeded"
    assert [c.step for c in commands(h)] == ["a", "b"]
    await reply(h, commands(h)[-1])
    assert (await h.state("s1")).status == "completed"
    assert h.transport.dead_letters == []


async def test_a_step_timer_due_while_paused_fires_only_after_resume(h: Harness) -> None:
    await h.start("paused", {"id": "x"}, saga_id="s2")
    await h.coordinator.pause("s2", "p2", by="alice")
    await h.advance(timedelta(seconds=30))  # a's timeout falls due while paused
    state = await h.state("s2")
    assert state.steps["a"].status == "dispatched"
    assert [e.note for e in await h.history("s2")][-1] == "saga paused: held until resumed"
    assert len(commands(h)) == 1
    await h.coordinator.resume("s2", "u2", by="bob")
    assert (await h.state("s2")).steps["a"].status == "retrying"
    await h.advance(timedelta(seconds=5))  # the backoff runs from the resume
    assert [(c.step, c.attempt) for c in commands(h)] == [("a", 1), ("a", 2)]


async def test_a_refused_pause_is_raised_to_a_caller_and_dead_lettered_from_the_broker(
    h: Harness,
) -> None:
    await h.start("paused", {"id": "x"}, saga_id="s3")
    await h.coordinator.pause("s3", "p3")
    with pytest.raises(SagaRefusedError, match="already paused"):
        await h.coordinator.pause("s3", "p3-again")
    await send(h, pause("s3"), routes.PAUSE_KEY, "p3-broker")
    [dead] = h.transport.dead_letters
    assert dead.reason == "pause_refused"
    assert "already paused" in dead.detail
    await h.coordinator.resume("s3", "u3")
    with pytest.raises(SagaRefusedError, match="it is not paused"):
        await h.coordinator.resume("s3", "u3-again")


async def test_a_retry_message_resumes_a_failed_compensation_and_undoes_each_step_once(
    h: Harness,
) -> None:
    await h.start("paused", {"id": "x"}, saga_id="s4")
    await reply(h, commands(h)[-1])  # a applied
    await reply(h, commands(h)[-1], ok=False, retryable=False)  # b refused: compensate a
    undo = commands(h)[-1]
    assert (undo.step, undo.kind) == ("a", "compensation")
    await reply(h, undo, ok=False)  # the only compensation attempt fails
    assert (await h.state("s4")).status == "failed"
    retry = RetrySaga(message_id="retry-s4", saga_id="s4", by="carol", sent_at=T0)
    await send(h, retry, routes.RETRY_KEY, "t1")
    again = commands(h)[-1]
    assert (again.step, again.kind, again.attempt) == ("a", "compensation", 2)
    assert again.idempotency_key == undo.idempotency_key  # the participant dedupes it
    await reply(h, again)
    assert (await h.state("s4")).status == "compensated"
    undos = [c.step for c in commands(h) if c.kind == "compensation"]
    assert undos == ["a", "a"]  # the failed attempt and its retry; b never applied
    # A compensated saga has nothing to retry.
    again_retry = RetrySaga(message_id="retry-s4-again", saga_id="s4", sent_at=T0)
    await send(h, again_retry, routes.RETRY_KEY, "t2")
    [dead] = h.transport.dead_letters
    assert dead.reason == "retry_refused"
