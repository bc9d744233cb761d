"""The saga state machine: ``decide(definition, state, input) -> Decision``.

Rule 1: everything that changes a saga happens here, as a function of the
definition, the current state and one input. Nothing here reads a clock, draws a
random number or does I/O; time arrives in the input and ids are derived from the
saga id, the step, the kind and the attempt. That is what makes replay exact.

Rule 2: decide never raises for anything a participant or a saga author's
callback does. A callback that raises fails the saga the way a failed step
would, with the exception in the reason.

Theory of operation:

* Forward: the saga walks its nodes (steps, parallel groups, waits) with a
  cursor. A step is dispatched, then settles as succeeded, failed (the
  participant applied nothing) or timed out (unknown: it may have applied).
  Failures and timeouts are retried per the step's ``Retry``, always with the
  same idempotency key, so a retry after a timeout cannot apply twice.
* Backward: on a failure, a saga deadline, a wait timeout or a cancel, the saga
  turns to ``compensating``. It first lets every dispatched step settle (the
  branches of a parallel group included), then compensates the steps that owe it
  (succeeded or unknown), one at a time, in reverse order of settling.
  Compensations retry with the saga's capped ``compensation_retry``; when that is
  exhausted the saga is ``failed`` and waits for an operator (``RetryRequested``).
* After a step marked ``pivot`` has succeeded there is no way back: a later
  failure ends the saga ``failed`` rather than compensating, a cancel is
  refused and the deadline no longer applies. While the pivot is unresolved
  (out, or timed out and retrying) compensation waits for it and it keeps being
  retried; if it then succeeds the saga goes forward again.
* Compensations are numbered on from the last attempt, also across an
  operator's retry, so every command has its own message id.
* Replies are matched by (step, kind, attempt) against the state, so duplicates,
  late and reordered replies change nothing twice. A late success for a step
  that had already given up makes that step owe its compensation.

Where things are: the rules (which reply counts, which timer is still due) are
here, the handlers of signals, cancels, recoveries and operators' retries in
``_requests``, the step-status table is ``STEP_TRANSITIONS`` in
``_state``; the mechanics they call are in ``_forward`` (walking, sending,
settling, retrying), ``_backward`` (turning back, the pivot rules, compensating),
``_working`` (the working copy and its bookkeeping), ``_timers`` (timer names) and
``_pause`` (an operator's pause and resume, which hold inputs and replay them here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from contracts import StepKind
from coordinator.core._backward import (
    compensate,
    compensate_next,
    compensation_failed,
    fail,
    pivot_passed,
    take_compensation,
    take_compensation_failure,
)
from coordinator.core._definition import SagaDefinition, StepDef
from coordinator.core._effects import Decision, Notify
from coordinator.core._forward import (
    advance,
    dispatch,
    retry_or_give_up,
    take_failure,
    take_late_success,
    take_success,
)
from coordinator.core._inputs import (
    CancelRequested,
    Input,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
    Start,
    StepCompleted,
    StepFailed,
    StepReply,
    TimerFired,
)
from coordinator.core._pause import decide_paused
from coordinator.core._requests import on_cancel, on_operator_retry, on_recovered, on_signal
from coordinator.core._state import SagaState, StepState, StepStatus
from coordinator.core._timers import TimerKey, TimerKind
from coordinator.core._working import Changed, _Working

__all__ = ["decide", "start"]

D = TypeVar("D")


# -- replies: which one counts ---------------------------------------------------------


class _TakeReply(Protocol):
    def __call__(self, w: _Working[D], step: StepDef[D], reply: StepReply, /) -> Changed: ...


@dataclass(frozen=True, slots=True)
class _ReplyRule:
    """A reply of type ``reply`` for the step's ``kind`` counts when ``accepts`` says so."""

    reply: type[StepCompleted] | type[StepFailed]
    kind: StepKind
    # (the step's state, the reply's attempt, whether the step has an undo) -> it counts
    accepts: Callable[[StepState, int, bool], bool]
    take: _TakeReply
    ignored: str  # the note when no rule takes such a reply


_SUCCESS_COUNTS: frozenset[StepStatus] = frozenset({"dispatched", "retrying", "awaiting_service"})

# Replies are matched by (step, kind, attempt) against the state, so that duplicates, late
# and reordered replies change nothing twice. The first row that accepts a reply takes it.
_REPLY_RULES: tuple[_ReplyRule, ...] = (
    # An action's success, from any attempt sent so far, while the step is out, in its
    # backoff or parked: every attempt carries the same idempotency key, so it applied.
    _ReplyRule(
        StepCompleted,
        "action",
        lambda st, n, _: st.status in _SUCCESS_COUNTS and 1 <= n <= st.attempt,
        take_success,
        "duplicate or late reply for {step} (attempt {attempt}) ignored",
    ),
    # An action's success after the step gave up (a reordered reply of an earlier attempt):
    # it applied after all and now owes its undo; once it owes, a copy changes nothing.
    _ReplyRule(
        StepCompleted,
        "action",
        # Only for an attempt that was sent: any other answers no command of ours.
        lambda st, n, undoable: (
            st.status in ("failed", "abandoned")
            and undoable
            and not st.owes
            and 1 <= n <= st.attempt
        ),
        take_late_success,
        "duplicate or late reply for {step} (attempt {attempt}) ignored",
    ),
    # An action's failure counts for the attempt that is out only: an earlier attempt's is
    # old news (a later attempt is out), and a copy arrives when the step moved on.
    _ReplyRule(
        StepFailed,
        "action",
        lambda st, n, _: st.status == "dispatched" and n == st.attempt,
        take_failure,
        "duplicate or late failure for {step} (attempt {attempt}) ignored",
    ),
    # A compensation's success, from any attempt so far, also during its backoff or while
    # its next attempt is parked behind an open circuit: it applied.
    _ReplyRule(
        StepCompleted,
        "compensation",
        lambda st, n, _: (
            st.status in ("compensating", "compensation_awaiting_service")
            and 1 <= n <= st.compensation_attempt
        ),
        take_compensation,
        "duplicate or late compensation reply for {step} ignored",
    ),
    # A compensation's failure counts for the attempt that is out only, and not during its
    # backoff: the attempt already counted as failed (its timeout fired first).
    _ReplyRule(
        StepFailed,
        "compensation",
        lambda st, n, _: (
            st.status == "compensating"
            and not st.compensation_retry_due
            and n == st.compensation_attempt
        ),
        take_compensation_failure,
        "duplicate or late compensation failure for {step} ignored",
    ),
)


def _on_reply(w: _Working[D], reply: StepReply) -> Changed:
    step = w.defn.steps.get(reply.step)
    if step is None:
        w.note(f"reply for unknown step {reply.step!r} ignored")
        return False
    st, undoable = w.steps[step.name], step.undo is not None
    rules = [r for r in _REPLY_RULES if isinstance(reply, r.reply) and r.kind == reply.kind]
    for rule in rules:
        if rule.accepts(st, reply.attempt, undoable):
            return rule.take(w, step, reply)
    w.note(rules[0].ignored.format(step=step.name, attempt=reply.attempt))
    return False


# -- timers: which one is still due ----------------------------------------------------


class _OnTimer(Protocol):
    def __call__(self, w: _Working[D], key: TimerKey, /) -> Changed: ...


def _on_deadline(w: _Working[D], key: TimerKey) -> Changed:
    if w.status != "running":
        return False
    if w.old.deadline_at is not None and w.at < w.old.deadline_at:
        # Fired for a deadline a pause (``hold_deadline``) has since moved on.
        w.note(f"deadline timer ignored: the deadline is now {w.old.deadline_at.isoformat()}")
        return False
    if pivot_passed(w):
        # Nothing can be undone any more; the steps after the pivot retry to the end.
        w.note("deadline passed after the pivot: the saga keeps going forward")
        return False
    fail(w, f"deadline of {w.defn.deadline} exceeded")
    return True


def _on_wait_timeout(w: _Working[D], key: TimerKey) -> Changed:
    name = key.step
    wait = w.defn.waits.get(name)
    if wait is None or w.steps[name].status != "waiting" or w.status != "running":
        w.note(f"stale wait timer for {name!r} ignored")
        return False
    if wait.on_timeout == "continue":
        w.set_step(name, status="skipped", finished_at=w.at)
        w.note(f"{name}: no signal {wait.signal!r} in time; continuing")
        advance(w)
        return True
    w.set_step(name, status="timed_out", error="no signal in time", finished_at=w.at)
    fail(w, f"{name}: no signal {wait.signal!r} within {wait.timeout}")
    return True


def _on_attempt_timeout(w: _Working[D], key: TimerKey) -> Changed:
    """The attempt it belongs to is still out (not in a backoff): it failed, maybe applied."""
    step, st = w.defn.steps[key.step], w.steps[key.step]
    if key.step_kind == "action" and st.status == "dispatched" and st.attempt == key.attempt:
        retry_or_give_up(w, step, key.attempt, "timed out", error_type=None, retryable=True)
        compensate_next(w)
        return True
    if (
        key.step_kind == "compensation"
        and st.status == "compensating"
        and not st.compensation_retry_due
        and st.compensation_attempt == key.attempt
    ):
        compensation_failed(w, step, key.attempt, "timed out")
        return True
    w.note(f"stale timer {key.name} ignored")
    return False


def _on_retry_due(w: _Working[D], key: TimerKey) -> Changed:
    """The backoff before attempt ``key.attempt`` is over: send it, if nothing moved on."""
    step, st = w.defn.steps[key.step], w.steps[key.step]
    if key.step_kind == "action" and st.status == "retrying" and st.attempt == key.attempt - 1:
        dispatch(w, step, key.attempt)
        return True
    if (
        key.step_kind == "compensation"
        and st.status == "compensating"
        and st.compensation_retry_due
        and st.compensation_attempt == key.attempt - 1
    ):
        compensate(w, step, key.attempt)
        return True
    w.note(f"stale timer {key.name} ignored")
    return False


_TIMER_RULES: dict[TimerKind, _OnTimer] = {
    # The saga ran out of time: it turns back, unless it is past the pivot.
    "deadline": _on_deadline,
    # A wait had no signal in time: it compensates or goes on, per ``on_timeout``.
    "wait": _on_wait_timeout,
    # An attempt had no reply in time: counted as failed with an unknown outcome.
    "timeout": _on_attempt_timeout,
    # A backoff ended: the next attempt goes out.
    "retry": _on_retry_due,
}


def _on_timer(w: _Working[D], inp: TimerFired) -> Changed:
    key = TimerKey.parse(inp.timer)
    if key is None or (key.kind in ("timeout", "retry") and key.step not in w.defn.steps):
        w.note(f"unknown timer {inp.timer!r} ignored")
        return False
    return _TIMER_RULES[key.kind](w, key)


def _apply(w: _Working[D], inp: Input) -> Changed:
    match inp:
        case StepCompleted() | StepFailed():
            return _on_reply(w, inp)
        case TimerFired():
            return _on_timer(w, inp)
        case SignalReceived():
            return on_signal(w, inp)
        case CancelRequested():
            return on_cancel(w, inp)
        case ServiceRecovered():
            return on_recovered(w, inp)
        case RetryRequested():
            return on_operator_retry(w, inp)
        case PauseRequested() | ResumeRequested():
            return False  # decided by ``decide_paused``, never here


# -- the two entry points ------------------------------------------------------------


def start(defn: SagaDefinition[D], inp: Start[D]) -> Decision[D]:
    """Create a saga from its input data and take its first steps."""
    deadline_at = inp.at + defn.deadline if defn.deadline is not None else None
    state: SagaState[D] = SagaState(
        saga_id=inp.saga_id,
        name=defn.name,
        version=defn.version,
        revision=0,
        status="running",
        data=inp.data,
        cursor=0,
        steps={name: StepState() for name in (*defn.steps, *defn.waits)},
        started_at=inp.at,
        updated_at=inp.at,
        deadline_at=deadline_at,
    )
    w = _Working(defn, state, inp)
    w.effects.append(Notify(event="started"))
    w.note("saga started")
    if deadline_at is not None:
        w.timer(TimerKey.deadline(), deadline_at)
    advance(w)
    return w.decision(started=True)


def decide(defn: SagaDefinition[D], state: SagaState[D], inp: Input) -> Decision[D]:
    """Apply one input to a saga.

    Returns the new state and the effects to carry out, or, when the input is a
    duplicate, late or does not apply, the unchanged state with ``changed=False``
    and a note saying why; ``refused`` too when a signal, a cancel, a retry, a
    pause or a resume is not allowed, so its sender can be told.
    """
    if state.paused or isinstance(inp, PauseRequested | ResumeRequested):
        return decide_paused(defn, state, inp, decide)
    if state.terminal and not isinstance(inp, SignalReceived | CancelRequested | RetryRequested):
        # Recorded in the history by the caller; a terminal saga never changes again.
        return Decision(
            state=state,
            effects=(),
            note=f"saga is {state.status}; ignored",
            changed=False,
            status_before=state.status,
        )
    w = _Working(defn, state, inp)
    return w.decision() if _apply(w, inp) else w.unchanged()
