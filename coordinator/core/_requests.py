"""Inputs from outside the saga's own steps: a signal, a cancel, a service that
recovered, an operator's retry of a failed compensation.

Each handler takes the working copy and the input and says whether the saga
changed; a refusal leaves it as it was (``_Working.refuse``).
"""

from __future__ import annotations

from typing import TypeVar

from coordinator.core._backward import (
    begin_compensation,
    compensate,
    compensate_next,
    pivot_passed,
)
from coordinator.core._definition import WaitDef
from coordinator.core._forward import advance, dispatch, signal_refusal, take_signal
from coordinator.core._inputs import (
    CancelRequested,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
)
from coordinator.core._state import StepStatus
from coordinator.core._working import Changed, _Working

__all__ = ["on_cancel", "on_operator_retry", "on_recovered", "on_signal"]

D = TypeVar("D")


def on_signal(w: _Working[D], inp: SignalReceived) -> Changed:
    if inp.message_id in w.seen_signals:
        w.note(f"duplicate signal {inp.name!r} ignored")
        return False
    if w.status not in ("running", "compensating"):
        return w.refuse(f"saga is {w.status}: it takes no more signals")
    refusal = signal_refusal(w, inp)
    if refusal:
        return w.refuse(refusal)
    taken = [wait.name for wait in w.defn.waits.values() if wait.signal == inp.name]
    # Every wait for it already took one: nothing will read it, now or after a
    # pivot sends a compensating saga forward again. Judged the same in both
    # statuses, so a copy sent again after the saga began compensating is
    # ignored as the first copy was (its id is not kept: nothing changed).
    if all(w.steps[n].status == "succeeded" for n in taken):
        w.note(f"signal {inp.name!r} ignored: {', '.join(taken)} already took one")
        return False
    w.seen_signals = (*w.seen_signals, inp.message_id)
    if w.status == "compensating":
        # Kept: a pivot that still succeeds sends the saga forward again.
        w.signals[inp.name] = inp.data
        w.note(f"signal {inp.name!r} kept while compensating")
        return True
    nodes = w.defn.nodes
    node = nodes[w.cursor] if w.cursor < len(nodes) else None
    if (
        isinstance(node, WaitDef)
        and node.signal == inp.name
        and w.steps[node.name].status == "waiting"
    ):
        take_signal(w, node, inp.data)
        advance(w)
    else:
        w.signals[inp.name] = inp.data
        w.note(f"signal {inp.name!r} kept for later")
    return True


def on_cancel(w: _Working[D], inp: CancelRequested) -> Changed:
    if w.status == "compensating":
        return w.refuse(f"saga is already compensating: {w.reason}")
    if w.status != "running":
        return w.refuse(f"saga is {w.status}: there is nothing to cancel")
    if pivot_passed(w):
        return w.refuse("saga is past its pivot: it can only go forward now")
    begin_compensation(w, "cancelled", inp.reason)
    return True


def on_recovered(w: _Working[D], inp: ServiceRecovered) -> Changed:
    """The service's breaker lets calls through: send what was parked behind it.

    Parked actions go out as their next attempt; a parked undo as its next
    compensation attempt. Either parks again if ``services_down`` still has the
    service (a replica's view that changed in between).
    """
    parked = [
        (w.defn.steps[n], s.status)
        for n, s in w.steps.items()
        if s.status in ("awaiting_service", "compensation_awaiting_service")
        and w.defn.steps[n].service == inp.service
    ]
    if w.status not in ("running", "compensating") or not parked:
        w.note(f"{inp.service} recovered: nothing of this saga waits for it")
        return False
    w.note(f"{inp.service} recovered: resuming {', '.join(step.name for step, _ in parked)}")
    for step, status in parked:
        st = w.steps[step.name]
        if status == "awaiting_service":
            dispatch(w, step, st.attempt + 1)
        else:
            compensate(w, step, st.compensation_attempt + 1)
    return True


def on_operator_retry(w: _Working[D], inp: RetryRequested) -> Changed:
    stuck = [n for n, s in w.steps.items() if s.status == "compensation_failed"]
    if w.status != "failed" or not stuck:
        return w.refuse(f"saga is {w.status}: it has no failed compensation to retry")
    for name in stuck:
        st = w.steps[name]
        status: StepStatus = "timed_out" if st.unknown else "succeeded"
        w.set_step(name, status=status, compensation_base=st.compensation_attempt)
    w.status = "compensating"
    w.finished_at = None
    w.note(f"operator retry of compensation: {', '.join(stuck)}")
    compensate_next(w)
    return True
