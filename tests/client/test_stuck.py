"""``find_stuck`` on the memory adapters: the order example in a ``Harness`` on virtual
time, with one service missing (a reply never comes), down (the step is parked), or
an order large enough to wait for its approval signal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from coordinator.client import Stuck, Wait, find_stuck, shapes_of
from coordinator.examples.orders import Ledger, build_services, saga
from coordinator.testing import Harness, VirtualClock

STEP_TIMEOUT = timedelta(seconds=10)  # the example's
BIG = 500_000  # over the approval threshold: the saga waits for a signal
SHAPES = shapes_of([saga])  # what the coordinators record of the definitions they run


def order(order_id: str, total_cents: int = 1_000) -> dict[str, object]:
    return {"order_id": order_id, "lines": [], "total_cents": total_cents}


@asynccontextmanager
async def harness(
    keep: Callable[[str], bool] = lambda name: True, *, down: frozenset[str] = frozenset()
) -> AsyncIterator[Harness]:
    clock = VirtualClock()
    services = [s for s in build_services(Ledger(), clock) if keep(s.name)]
    async with Harness([saga], services, clock=clock, services_down=down) as h:
        yield h


def only(found: list[Stuck], saga_id: str) -> Stuck:
    [stuck] = [s for s in found if s.saga_id == saga_id]
    return stuck


async def test_a_saga_waiting_for_a_reply_names_the_step_attempt_and_since_when() -> None:
    async with harness(lambda name: name != "payments") as h:
        await h.start("order.place", order("o-1"), saga_id="o-1")
        await h.settle()
        sent_at = h.clock.now()
        await h.advance(timedelta(seconds=3))

        stuck = only(await find_stuck(h.store, timedelta(seconds=2), shapes=SHAPES), "o-1")

    assert (stuck.name, stuck.status, stuck.last_transition) == ("order.place", "running", sent_at)
    assert stuck.deadline_at == sent_at + timedelta(days=2)
    reply, deadline = stuck.waits
    assert reply == Wait(
        what="reply",
        step="charge",
        kind="action",
        attempt=1,
        since=sent_at,
        service="payments",
        command="Charge",
        due=sent_at + STEP_TIMEOUT,
    )
    assert (deadline.what, deadline.timer, deadline.due) == (
        "timer",
        "deadline",
        sent_at + timedelta(days=2),
    )


async def test_only_sagas_quiet_for_longer_than_the_threshold_are_stuck() -> None:
    async with harness(lambda name: name != "payments") as h:
        await h.start("order.place", order("o-1"), saga_id="o-1")
        await h.advance(timedelta(seconds=3))

        assert await find_stuck(h.store, timedelta(seconds=4), shapes=SHAPES) == []
        assert [
            s.saga_id for s in await find_stuck(h.store, timedelta(seconds=3), shapes=SHAPES)
        ] == ["o-1"]
        assert await find_stuck(h.store, timedelta(0), shapes=SHAPES, names={"other"}) == []


async def test_a_step_waiting_for_its_retry_names_the_timer_and_when_it_is_due() -> None:
    async with harness(lambda name: name != "payments") as h:
        await h.start("order.place", order("o-1"), saga_id="o-1")
        await h.advance(STEP_TIMEOUT)  # the first charge timed out; the next waits ~2 s
        timed_out = h.clock.now()

        stuck = only(await find_stuck(h.store, timedelta(0), shapes=SHAPES), "o-1")

    [retry] = [w for w in stuck.waits if w.step == "charge"]
    assert (retry.what, retry.timer, retry.kind, retry.attempt) == (
        "timer",
        "retry:charge:action:2",
        "action",
        2,
    )
    # The example's backoff is 2 s with jitter.
    assert retry.due is not None and timed_out < retry.due <= timed_out + timedelta(seconds=4)


async def test_a_saga_waiting_for_a_signal_names_it_and_its_timeout() -> None:
    async with harness() as h:
        await h.start("order.place", order("o-1", BIG), saga_id="o-1")
        await h.settle()
        began = h.clock.now()
        await h.advance(timedelta(minutes=20))

        stuck = only(await find_stuck(h.store, timedelta(minutes=10), shapes=SHAPES), "o-1")

    [signal] = [w for w in stuck.waits if w.what == "signal"]
    assert signal == Wait(
        what="signal",
        step="approval",
        signal="approval",
        since=began,
        timer="wait:approval",
        due=began + timedelta(hours=24),
    )


async def test_a_step_parked_behind_an_open_circuit_names_the_service() -> None:
    async with harness(down=frozenset({"payments"})) as h:
        await h.start("order.place", order("o-1"), saga_id="o-1")
        await h.settle()
        parked_at = h.clock.now()

        stuck = only(await find_stuck(h.store, timedelta(0), shapes=SHAPES), "o-1")

    assert Wait(what="service", step="charge", service="payments", since=parked_at) in stuck.waits


async def test_a_paused_saga_waits_first_for_an_operator_to_resume_it() -> None:
    async with harness() as h:
        await h.start("order.place", order("o-1", BIG), saga_id="o-1")
        await h.settle()
        await h.coordinator.pause("o-1", "pause-1", by="alice")
        paused_at = h.clock.now()
        await h.advance(timedelta(minutes=20))

        stuck = only(await find_stuck(h.store, timedelta(minutes=10), shapes=SHAPES), "o-1")

    assert stuck.waits[0] == Wait(what="resume", since=paused_at, by="alice")
    assert any(w.what == "signal" for w in stuck.waits[1:])  # and still for its signal


@pytest.mark.parametrize("total", [1_000, BIG])
async def test_a_saga_that_ended_is_never_stuck(total: int) -> None:
    async with harness() as h:
        await h.start("order.place", order("o-1", total), saga_id="o-1")
        if total == BIG:
            await h.settle()
            await h.cancel("o-1")
        state = await h.run_until_done("o-1")
        assert state.terminal
        await h.advance(timedelta(hours=1))

        assert await find_stuck(h.store, timedelta(0), shapes=SHAPES) == []
