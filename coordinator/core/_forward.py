"""Going forward: walking the nodes, sending steps, settling them, retrying them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from coordinator.core._backward import (
    compensate_next,
    fail,
    pivot_keeps_retrying,
    resolving_pivot,
    resume_after_pivot,
    stop_forward,
)
from coordinator.core._definition import ParallelDef, StepDef, WaitDef
from coordinator.core._inputs import SignalReceived, StepCompleted, StepFailed, StepReply
from coordinator.core._state import StepStatus
from coordinator.core._timers import TimerKey
from coordinator.core._working import Changed, _Working, describe

__all__ = [
    "advance",
    "dispatch",
    "retry_or_give_up",
    "signal_refusal",
    "take_failure",
    "take_late_success",
    "take_signal",
    "take_success",
]

D = TypeVar("D")

# A node is done, and the cursor moves on, once it (every branch of a group) is one of these.
_DONE = frozenset({"succeeded", "skipped"})


def advance(w: _Working[D]) -> None:
    """Move the cursor over finished nodes and start the next ones."""
    nodes = w.defn.nodes
    while w.status == "running":
        if w.cursor >= len(nodes):
            w.finish("completed", "completed", None)
            return
        node = nodes[w.cursor]
        if isinstance(node, ParallelDef):
            for branch in node.branches:
                _enter_step(w, branch)
            if w.status != "running":
                return
            done = all(w.steps[b.name].status in _DONE for b in node.branches)
        elif isinstance(node, WaitDef):
            _enter_wait(w, node)
            done = w.steps[node.name].status in _DONE
        else:
            _enter_step(w, node)
            done = w.steps[node.name].status in _DONE
        if not done:
            return
        w.cursor += 1


def _starts(w: _Working[D], name: str, when: Callable[[D], bool] | None) -> bool:
    """Whether a node reached by the cursor starts now.

    Not if it started before; a false ``when`` skips it; a ``when`` that raises
    abandons it and fails the saga.
    """
    if w.steps[name].status != "pending":
        return False
    if when is None:
        return True
    try:
        holds = bool(when(w.data))
    except Exception as exc:
        w.set_step(name, status="abandoned", error=describe(exc))
        fail(w, f"when= of {name!r} raised {describe(exc)}")
        return False
    if not holds:
        w.set_step(name, status="skipped", finished_at=w.at)
        w.note(f"{name} skipped")
    return holds


def _enter_step(w: _Working[D], step: StepDef[D]) -> None:
    if _starts(w, step.name, step.when):
        dispatch(w, step, 1)


def dispatch(w: _Working[D], step: StepDef[D], attempt: int) -> None:
    """Send attempt ``attempt`` of the step's action, unless its circuit is open."""
    if step.service in w.services_down:
        if step.on_unavailable == "wait":
            w.set_step(step.name, status="awaiting_service", attempt=attempt - 1)
            w.note(f"{step.name} waits: {step.service} is unavailable")
            return
        error = f"service {step.service!r} is unavailable (circuit open)"
        _gave_up(w, step, error, unknown=w.steps[step.name].unknown)
        return
    try:
        payload = step.send(w.data)
    except Exception as exc:
        w.set_step(step.name, status="failed", error=describe(exc))
        fail(w, f"send= of {step.name!r} raised {describe(exc)}")
        return
    w.emit(step, "action", attempt, payload)
    w.set_step(step.name, status="dispatched", attempt=attempt)


def _enter_wait(w: _Working[D], wait: WaitDef[D]) -> None:
    if not _starts(w, wait.name, wait.when):
        return
    w.set_step(wait.name, status="waiting")
    if wait.signal in w.signals:
        take_signal(w, wait, w.signals.pop(wait.signal))
        return
    w.note(f"{wait.name} waits for signal {wait.signal!r}")
    if wait.timeout is not None:
        w.timer(TimerKey.wait(wait.name), w.at + wait.timeout)


def take_signal(w: _Working[D], wait: WaitDef[D], data: dict[str, object]) -> None:
    try:
        accepted = wait.accept is None or wait.accept(w.data, data)
        if accepted and wait.apply_signal is not None:
            w.data = wait.apply_signal(w.data, data)
    except Exception as exc:
        w.set_step(wait.name, status="failed", error=describe(exc))
        fail(w, f"signal {wait.signal!r} could not be applied: {describe(exc)}")
        return
    if wait.timeout is not None:
        w.cancel_timer(TimerKey.wait(wait.name))
    if not accepted:
        w.set_step(wait.name, status="failed", error="rejected", finished_at=w.at)
        fail(w, f"{wait.name}: signal {wait.signal!r} rejected")
        return
    w.set_step(wait.name, status="succeeded", finished_at=w.at)
    w.note(f"{wait.name}: signal {wait.signal!r} received")


def signal_refusal(w: _Working[D], inp: SignalReceived) -> str:
    """Why a signal cannot be taken by any wait it could reach, or ``""``.

    The data is checked when the signal arrives, also for a wait not reached yet:
    refusing it later would tell nobody, and the wait would go on without it.
    """
    waits = [wait for wait in w.defn.waits.values() if wait.signal == inp.name]
    if not waits:
        known = sorted({wait.signal for wait in w.defn.waits.values()})
        expected = ", ".join(repr(k) for k in known) if known else "none"
        return f"saga {w.defn.key} has no wait for signal {inp.name!r} (it waits for: {expected})"
    # While compensating the abandoned waits come back only if the pivot, still out,
    # succeeds and sends the saga forward again. With no pivot out nothing will read
    # the signal: refused, also when an operator's retry revives a failed saga (which
    # refused it), so that a copy of it is judged as the first one was.
    comes_back = w.status == "compensating" and any(resolving_pivot(w, n) for n in w.defn.steps)
    open_: tuple[StepStatus, ...] = (
        ("pending", "waiting", "abandoned") if comes_back else ("pending", "waiting")
    )
    reachable = [wait for wait in waits if w.steps[wait.name].status in open_]
    if not reachable:
        if any(w.steps[wait.name].status == "succeeded" for wait in waits):
            # A second copy under a new id (a sender that retried): not news to anyone.
            return ""
        ended = ", ".join(f"{wait.name!r} is {w.steps[wait.name].status}" for wait in waits)
        return f"signal {inp.name!r} comes too late: {ended}"
    errors = []
    for wait in reachable:
        if wait.data_type is None:
            return ""
        try:
            msgspec.convert(inp.data, wait.data_type)
        except msgspec.ValidationError as exc:
            errors.append(f"{exc}")
            continue
        return ""
    kind = getattr(reachable[0].data_type, "__name__", str(reachable[0].data_type))
    return f"data of signal {inp.name!r} does not fit {kind}: {'; '.join(errors)}"


# -- settling a step -----------------------------------------------------------------


def succeeded(w: _Working[D], step: StepDef[D], result: dict[str, object]) -> None:
    w.settle(step.name, "succeeded", error=None, finished_at=w.at)
    w.note(f"{step.name} succeeded")
    if step.apply_result is not None and w.status == "running":
        try:
            w.data = step.apply_result(w.data, result)
        except Exception as exc:
            fail(w, f"result of {step.name!r} could not be applied: {describe(exc)}")


def _gave_up(w: _Working[D], step: StepDef[D], error: str, *, unknown: bool) -> None:
    """The step's attempts are over without a success."""
    w.note(f"{step.name} gave up: {error}")
    if unknown:
        w.settle(step.name, "timed_out", error=error, finished_at=w.at)
    else:
        w.set_step(step.name, status="failed", error=error, finished_at=w.at)
    if unknown and step.undo is None:
        # It may have applied and cannot be undone: neither way is safe.
        stop_forward(w)
        w.finish("failed", "failed", f"{step.name}: {error}; outcome unknown and no undo")
        return
    if w.status == "running":
        fail(w, f"{step.name}: {error}")


def retry_or_give_up(
    w: _Working[D],
    step: StepDef[D],
    attempt: int,
    error: str,
    *,
    error_type: str | None,
    retryable: bool,
) -> None:
    """Attempt ``attempt`` failed (``error_type``) or timed out (``None``): retry it, or stop."""
    unknown = w.steps[step.name].unknown or error_type is None
    going_on = w.status == "running" or pivot_keeps_retrying(step, unknown)
    if going_on and step.retry.allows(attempt, error_type=error_type, retryable=retryable):
        delay = step.retry.delay(attempt, seed=f"{w.old.saga_id}:{step.name}")
        w.set_step(step.name, status="retrying", unknown=unknown, error=error)
        w.timer(TimerKey.retry(step.name, "action", attempt + 1), w.at + delay)
        w.note(f"{step.name} attempt {attempt} {error}; retry in {delay.total_seconds():.2f}s")
        return
    w.set_step(step.name, unknown=unknown)
    _gave_up(w, step, error, unknown=unknown)


# -- a reply the rules in _machine accepted ------------------------------------------


def take_success(w: _Working[D], step: StepDef[D], reply: StepReply) -> Changed:
    assert isinstance(reply, StepCompleted)
    st = w.steps[step.name]
    if step.timeout is not None and st.status == "dispatched":
        w.cancel_timer(TimerKey.timeout(step.name, "action", st.attempt))
    elif st.status == "retrying":
        w.cancel_timer(TimerKey.retry(step.name, "action", st.attempt + 1))
    succeeded(w, step, reply.result)
    resume_after_pivot(w, step)
    if w.status == "running":
        advance(w)
    else:
        compensate_next(w)
    return True


def take_late_success(w: _Working[D], step: StepDef[D], reply: StepReply) -> Changed:
    w.settle(step.name, "succeeded")
    w.note(f"late success of {step.name}: compensation owed")
    if w.status == "running":
        fail(w, f"{step.name} succeeded after it had failed")
    else:
        compensate_next(w)
    return True


def take_failure(w: _Working[D], step: StepDef[D], reply: StepReply) -> Changed:
    assert isinstance(reply, StepFailed)
    if step.timeout is not None:
        w.cancel_timer(TimerKey.timeout(step.name, "action", reply.attempt))
    retry_or_give_up(
        w,
        step,
        reply.attempt,
        f"{reply.error_type}: {reply.error_message}",
        error_type=reply.error_type,
        retryable=reply.retryable,
    )
    compensate_next(w)
    return True
