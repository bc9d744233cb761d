"""Example-based tests of the pure state machine: happy path."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from machine_support import (
    DEADLINE_TIMER,
    Order,
    Reserve,
    Reserved,
    Run,
    at,
    cancelled_timers,
    dispatches,
    notified,
    saga,
    sent,
    started_timers,
    step,
)

# -- happy path ----------------------------------------------------------------------------


def test_happy_path_through_a_sequential_saga() -> None:
    s = saga()
    defn = s.define(
        step(s, "reserve", timeout=timedelta(seconds=10)),
        step(s, "charge"),
        step(s, "ship"),
    )
    run = Run(defn)
    first = run.last
    assert notified(first) == ["started"]
    assert run.state.status == "running"
    [d] = dispatches(first)
    assert d.message_id == "o1:reserve:action:1"
    assert d.idempotency_key == "o1:reserve:action"
    assert (d.step, d.kind, d.attempt, d.service, d.command) == (
        "reserve",
        "action",
        1,
        "svc-reserve",
        "Reserve",
    )
    assert msgspec.json.decode(d.payload) == {"order_id": "o1"}
    assert d.deadline == at(10)
    assert started_timers(first) == {"timeout:reserve:action:1": at(10)}
    assert run.status("reserve") == "dispatched"
    assert run.status("charge") == "pending"

    d2 = run.ok("reserve", t=2)
    assert cancelled_timers(d2) == ["timeout:reserve:action:1"]
    assert sent(d2) == ["charge"]
    assert dispatches(d2)[0].deadline is None
    assert run.status("reserve") == "succeeded"
    assert run.state.steps["reserve"].owes
    assert run.state.cursor == 1

    assert sent(run.ok("charge", t=3)) == ["ship"]
    done = run.ok("ship", t=4)
    assert run.state.status == "completed"
    assert run.state.terminal
    assert run.state.finished_at == at(4)
    assert notified(done) == ["completed"]
    assert dispatches(done) == []
    assert run.state.settled == ("reserve", "charge", "ship")
    assert all(st.status == "succeeded" for st in run.state.steps.values())
    assert [d.state.revision for d in run.decisions] == [1, 2, 3, 4]


def test_start_with_a_deadline_schedules_it_and_completion_cancels_it() -> None:
    s = saga(deadline=timedelta(minutes=5))
    defn = s.define(step(s, "reserve"))
    run = Run(defn)
    assert started_timers(run.last) == {DEADLINE_TIMER: at(300)}
    assert run.state.deadline_at == at(300)
    done = run.ok("reserve")
    assert DEADLINE_TIMER in cancelled_timers(done)
    assert run.state.status == "completed"


def test_merge_updates_the_data_for_later_steps() -> None:
    s = saga()
    seen: list[Order] = []

    def send_with(o: Order) -> Reserve:
        seen.append(o)
        return Reserve(order_id=o.hold or "none")

    defn = s.define(
        step(
            s,
            "reserve",
            result=Reserved,
            merge=lambda o, r: msgspec.structs.replace(o, hold=r.hold_id),
        ),
        step(s, "charge", send=send_with),
    )
    run = Run(defn)
    d = run.ok("reserve", result={"hold_id": "H1"})
    assert run.state.data.hold == "H1"
    assert msgspec.json.decode(dispatches(d)[0].payload) == {"order_id": "H1"}
    assert seen[-1].hold == "H1"
