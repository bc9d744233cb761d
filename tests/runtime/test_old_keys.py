"""The routing keys before ``reply.``/``control.`` are still taken, for one release;
a reply on the current keys must name the step's service (the in-memory Harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_pause_retry import SAGA, T0, commands, pause, send

from contracts import StartSaga, TaskCompleted, routes
from coordinator.runtime import WRONG_SENDER
from coordinator.testing import Harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with Harness([SAGA]) as harness:
        yield harness


def done(command_id: str, step: str, message_id: str) -> TaskCompleted:
    return TaskCompleted(
        message_id=message_id,
        saga_id="s1",
        saga_name=SAGA.name,
        step=step,
        attempt=1,
        kind="action",
        causation_id=command_id,
        sent_at=T0,
    )


async def test_the_old_keys_still_start_pause_and_answer(h: Harness) -> None:
    start = StartSaga(
        message_id="start-s1", saga_id="s1", saga_name=SAGA.name, input={"id": "x"}, sent_at=T0
    )
    await send(h, start, f"{SAGA.name}.StartSaga", "start-s1")
    [first] = commands(h)
    await send(h, done(first.message_id, "a", "r1"), f"{SAGA.name}.TaskCompleted", "r1")
    assert (await h.state("s1")).steps["a"].status == "succeeded"
    await send(h, pause("s1"), "pause.PauseSaga", "p1")
    assert (await h.state("s1")).paused
    assert h.transport.dead_letters == []


async def test_a_reply_naming_another_service_is_refused(h: Harness) -> None:
    await h.start(SAGA.name, {"id": "x"}, saga_id="s1")
    [first] = commands(h)
    before = await h.state("s1")
    key = routes.reply_key("other", SAGA.name, "TaskCompleted")
    await send(h, done(first.message_id, "a", "r1"), key, "r1")
    [letter] = h.transport.dead_letters
    assert letter.reason == WRONG_SENDER
    assert "of service 'svc' published as 'other'" in letter.detail
    assert (await h.state("s1")).revision == before.revision
    # Under its own service's key the same reply is taken.
    await send(
        h,
        done(first.message_id, "a", "r2"),
        routes.reply_key("svc", SAGA.name, "TaskCompleted"),
        "r2",
    )
    assert (await h.state("s1")).steps["a"].status == "succeeded"


async def test_a_message_saying_more_than_its_key_is_refused(h: Harness) -> None:
    await h.start(SAGA.name, {"id": "x"}, saga_id="s1")
    [first] = commands(h)
    before = await h.state("s1")
    reply = done(first.message_id, "a", "r1")
    await send(h, reply, routes.reply_key("svc", "other-saga", "TaskCompleted"), "r1")
    await send(h, reply, routes.reply_key("svc", SAGA.name, "TaskFailed"), "r1")
    await send(h, pause("s1"), routes.reply_key("svc", SAGA.name, "TaskCompleted"), "p1")
    await send(h, pause("s1"), routes.CANCEL_KEY, "p2")
    assert [(d.reason, d.message_id) for d in h.transport.dead_letters] == [
        (WRONG_SENDER, "r1"),
        (WRONG_SENDER, "r1"),
        (WRONG_SENDER, "p1"),
        (WRONG_SENDER, "p2"),
    ]
    assert "a PauseSaga of saga '-' under routing key 'control.cancel'" in (
        h.transport.dead_letters[-1].detail
    )
    assert (await h.state("s1")).revision == before.revision
