"""Going backward: turning to compensation, the pivot rules, and each compensation.

The pivot rules, all of them here:

* After the pivot has succeeded there is no way back (:func:`pivot_passed`): a
  failure ends the saga ``failed`` instead of compensating (:func:`fail`), and
  the handlers refuse a cancel and let the deadline pass.
* While the pivot is unresolved, out or timed out and retrying
  (:func:`resolving_pivot`), turning back leaves it alone (:func:`stop_forward`),
  compensation waits for it (:func:`compensate_next`) and it keeps being retried
  (:func:`pivot_keeps_retrying`).
* If it then succeeds, the saga goes forward again (:func:`resume_after_pivot`).
"""

from __future__ import annotations

from typing import TypeVar

from coordinator.core._definition import StepDef
from coordinator.core._inputs import StepFailed, StepReply
from coordinator.core._state import SagaStatus, StepState
from coordinator.core._timers import TimerKey
from coordinator.core._working import Changed, _Working, describe

__all__ = [
    "begin_compensation",
    "compensate",
    "compensate_next",
    "compensation_failed",
    "fail",
    "pivot_keeps_retrying",
    "pivot_passed",
    "resume_after_pivot",
    "stop_forward",
    "take_compensation",
    "take_compensation_failure",
]

D = TypeVar("D")


# -- the pivot ---------------------------------------------------------------------


def pivot_passed(w: _Working[D]) -> bool:
    """The point of no return is behind the saga: it can only go forward."""
    return any(s.pivot and w.steps[s.name].status == "succeeded" for s in w.defn.steps.values())


def resolving_pivot(w: _Working[D], name: str) -> bool:
    """The pivot is out, or timed out and retrying: its outcome decides the way."""
    st, step = w.steps[name], w.defn.steps.get(name)
    if step is None or not step.pivot:
        return False
    return st.status == "dispatched" or (
        st.unknown and st.status in ("retrying", "awaiting_service")
    )


def pivot_keeps_retrying(step: StepDef[D], unknown: bool) -> bool:
    """A pivot that may have applied is retried even while compensating: it cannot be undone."""
    return step.pivot and unknown


def resume_after_pivot(w: _Working[D], step: StepDef[D]) -> None:
    """If the pivot just succeeded after a cancel or the deadline: there is no way back now."""
    if w.status != "compensating" or not step.pivot:
        return
    w.note(f"the pivot succeeded: going forward despite {w.reason!r}")
    w.status, w.outcome, w.reason = "running", None, None
    for name, st in w.steps.items():
        if st.status == "abandoned" and st.attempt == 0:
            w.set_step(name, status="pending")


# -- turning back ------------------------------------------------------------------


def fail(w: _Working[D], reason: str) -> None:
    """Something went wrong going forward: compensate, or stop if past the pivot."""
    if w.status != "running":
        return
    if pivot_passed(w):
        stop_forward(w)
        w.finish("failed", "failed", f"{reason} (after the pivot: no compensation)")
        return
    begin_compensation(w, "compensated", reason)


def begin_compensation(w: _Working[D], outcome: SagaStatus, reason: str) -> None:
    w.status = "compensating"
    w.outcome = outcome
    w.reason = reason
    w.note(f"compensating: {reason}")
    stop_forward(w)
    compensate_next(w)


def stop_forward(w: _Working[D]) -> None:
    """Abandon every step that is not out on the wire."""
    for name, st in list(w.steps.items()):
        if resolving_pivot(w, name):
            continue  # it may have applied and cannot be undone: let it finish first
        if st.status in ("retrying", "awaiting_service"):
            _stop_attempts(w, name, st)
        elif st.status == "waiting":
            if w.defn.waits[name].timeout is not None:
                w.cancel_timer(TimerKey.wait(name))
            w.set_step(name, status="abandoned")
        elif st.status == "pending":
            w.set_step(name, status="abandoned")


def _stop_attempts(w: _Working[D], name: str, st: StepState) -> None:
    """A step between attempts: it settles unknown if one timed out, else it is abandoned."""
    if st.status == "retrying":
        w.cancel_timer(TimerKey.retry(name, "action", st.attempt + 1))
    if st.unknown:
        w.settle(name, "timed_out")
    else:
        w.set_step(name, status="abandoned")


# -- compensating, one step at a time ----------------------------------------------

# A compensation waits while any of these is so: a branch still out, or an undo out or parked.
_IN_PROGRESS = frozenset({"dispatched", "compensating", "compensation_awaiting_service"})


def compensate_next(w: _Working[D]) -> None:
    if w.status != "compensating":
        return
    if any(s.status in _IN_PROGRESS for s in w.steps.values()):
        return  # let every branch settle first; one compensation at a time
    if any(resolving_pivot(w, name) for name in w.steps):
        return
    for name in reversed(w.settled):
        st = w.steps[name]
        if st.owes and st.status in ("succeeded", "timed_out"):
            compensate(w, w.defn.steps[name], st.compensation_attempt + 1)
            return
    assert w.outcome is not None
    w.finish(w.outcome, "cancelled" if w.outcome == "cancelled" else "compensated", None)


def compensate(w: _Working[D], step: StepDef[D], attempt: int) -> None:
    """Send attempt ``attempt`` of the step's undo; park it while its circuit is open.

    Unlike an action (``on_unavailable``), an undo never gives up on an open
    circuit: what the step did must be undone, so it waits for the service, and
    says so in the history, as long as it takes (``ServiceRecovered`` sends it).
    """
    assert step.undo is not None
    if step.service in w.services_down:
        w.set_step(
            step.name,
            status="compensation_awaiting_service",
            compensation_attempt=attempt - 1,
            compensation_retry_due=False,
        )
        w.note(f"{step.name} compensation waits: {step.service} is unavailable")
        return
    try:
        payload = step.undo(w.data)
    except Exception as exc:
        _compensation_exhausted(w, step, f"undo= raised {describe(exc)}")
        return
    w.set_step(
        step.name, status="compensating", compensation_attempt=attempt, compensation_retry_due=False
    )
    w.emit(step, "compensation", attempt, payload)


def compensation_failed(w: _Working[D], step: StepDef[D], attempt: int, error: str) -> None:
    policy = w.defn.compensation_retry
    in_round = attempt - w.steps[step.name].compensation_base
    if policy.allows(in_round, error_type=None, retryable=True):
        delay = policy.delay(in_round, seed=f"{w.old.saga_id}:{step.name}:undo")
        w.set_step(step.name, error=error, compensation_retry_due=True)
        w.timer(TimerKey.retry(step.name, "compensation", attempt + 1), w.at + delay)
        w.note(f"{step.name} compensation {attempt} {error}; retry in {delay.total_seconds():.2f}s")
        return
    _compensation_exhausted(w, step, error)


def _compensation_exhausted(w: _Working[D], step: StepDef[D], error: str) -> None:
    w.set_step(step.name, status="compensation_failed", error=error)
    w.finish("failed", "failed", f"compensation of {step.name!r} failed: {error}")


# -- a compensation reply the rules in _machine accepted ------------------------------


def take_compensation(w: _Working[D], step: StepDef[D], reply: StepReply) -> Changed:
    st = w.steps[step.name]
    if st.compensation_retry_due:
        w.cancel_timer(TimerKey.retry(step.name, "compensation", st.compensation_attempt + 1))
    elif step.timeout is not None:
        w.cancel_timer(TimerKey.timeout(step.name, "compensation", st.compensation_attempt))
    w.set_step(
        step.name,
        status="compensated",
        owes=False,
        error=None,
        compensation_retry_due=False,
        finished_at=w.at,
    )
    w.note(f"{step.name} compensated")
    compensate_next(w)
    return True


def take_compensation_failure(w: _Working[D], step: StepDef[D], reply: StepReply) -> Changed:
    assert isinstance(reply, StepFailed)
    if step.timeout is not None:
        w.cancel_timer(TimerKey.timeout(step.name, "compensation", reply.attempt))
    compensation_failed(w, step, reply.attempt, f"{reply.error_type}: {reply.error_message}")
    return True
