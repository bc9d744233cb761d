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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from contracts import StepKind
from coordinator.core._definition import ParallelDef, SagaDefinition, StepDef, WaitDef
from coordinator.core._effects import (
    CancelTimer,
    Decision,
    Dispatch,
    Effect,
    LifecycleEvent,
    Notify,
    StartTimer,
)
from coordinator.core._inputs import (
    CancelRequested,
    Input,
    RetryRequested,
    ServiceRecovered,
    SignalReceived,
    Start,
    StepCompleted,
    StepFailed,
    TimerFired,
)
from coordinator.core._state import SagaState, SagaStatus, StepState, StepStatus

__all__ = ["decide", "start"]

D = TypeVar("D")

_SETTLED_OK = frozenset({"succeeded", "skipped"})
_ACCEPTS_SUCCESS = frozenset({"dispatched", "retrying", "awaiting_service"})
DEADLINE_TIMER = "deadline"


def timer_name(prefix: str, step: str, kind: StepKind, attempt: int) -> str:
    """Timers carry the attempt they belong to, so a stale one is recognised."""
    return f"{prefix}:{step}:{kind}:{attempt}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Tx(Generic[D]):
    """A working copy of one saga for the length of one input."""

    def __init__(self, defn: SagaDefinition[D], state: SagaState[D], inp: Start[D] | Input) -> None:
        self.defn = defn
        self.old = state
        self.at: datetime = inp.at
        self.down = inp.services_down
        self.status: SagaStatus = state.status
        self.data: D = state.data
        self.cursor = state.cursor
        self.steps = dict(state.steps)
        self.settled = list(state.settled)
        self.signals = dict(state.signals)
        self.seen_signals = state.seen_signals
        self.outcome = state.outcome
        self.reason = state.reason
        self.finished_at = state.finished_at
        self.effects: list[Effect] = []
        self.notes: list[str] = []
        self.refused = ""

    # -- bookkeeping --------------------------------------------------------

    def set_step(self, name: str, **changes: object) -> None:
        self.steps[name] = msgspec.structs.replace(self.steps[name], **changes)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def refuse(self, reason: str) -> bool:
        """Turn an operator's input down: the saga stays as it was, the sender hears why."""
        self.refused = reason
        self.note(f"refused: {reason}")
        return False

    def timer(self, name: str, due: datetime) -> None:
        self.effects.append(StartTimer(timer=name, due=due))

    def cancel_timer(self, name: str) -> None:
        self.effects.append(CancelTimer(timer=name))

    def finish(self, status: SagaStatus, event: LifecycleEvent, reason: str | None) -> None:
        self.status = status
        self.reason = reason if reason is not None else self.reason
        self.finished_at = self.at
        if self.defn.deadline is not None:
            self.cancel_timer(DEADLINE_TIMER)
        self.effects.append(Notify(event=event, reason=self.reason))
        self.note(f"saga {status}" + (f": {self.reason}" if self.reason else ""))

    def decision(self) -> Decision[D]:
        new = msgspec.structs.replace(
            self.old,
            revision=self.old.revision + 1,
            status=self.status,
            data=self.data,
            cursor=self.cursor,
            steps=self.steps,
            settled=tuple(self.settled),
            signals=self.signals,
            seen_signals=self.seen_signals,
            outcome=self.outcome,
            reason=self.reason,
            updated_at=self.at,
            finished_at=self.finished_at,
        )
        return Decision(
            state=new, effects=tuple(self.effects), note="; ".join(self.notes), changed=True
        )

    @property
    def pivot_passed(self) -> bool:
        return any(
            s.pivot and self.steps[s.name].status == "succeeded" for s in self.defn.steps.values()
        )

    # -- forward ------------------------------------------------------------

    def advance(self) -> None:
        """Move the cursor over finished nodes and start the next ones."""
        nodes = self.defn.nodes
        while self.status == "running":
            if self.cursor >= len(nodes):
                self.finish("completed", "completed", None)
                return
            node = nodes[self.cursor]
            if isinstance(node, ParallelDef):
                for branch in node.branches:
                    self.enter_step(branch)
                if self.status != "running":
                    return
                done = all(self.steps[b.name].status in _SETTLED_OK for b in node.branches)
            elif isinstance(node, WaitDef):
                self.enter_wait(node)
                done = self.steps[node.name].status in _SETTLED_OK
            else:
                self.enter_step(node)
                done = self.steps[node.name].status in _SETTLED_OK
            if not done:
                return
            self.cursor += 1

    def holds(self, when: Callable[[D], bool] | None, name: str) -> bool | None:
        """Evaluate a ``when`` predicate; ``None`` means it raised and the saga fails."""
        if when is None:
            return True
        try:
            return bool(when(self.data))
        except Exception as exc:
            self.set_step(name, status="abandoned", error=_describe(exc))
            self.fail(f"when= of {name!r} raised {_describe(exc)}")
            return None

    def enter_step(self, step: StepDef[D]) -> None:
        if self.steps[step.name].status != "pending":
            return
        holds = self.holds(step.when, step.name)
        if holds is None:
            return
        if not holds:
            self.set_step(step.name, status="skipped", finished_at=self.at)
            self.note(f"{step.name} skipped")
            return
        self.dispatch(step, 1)

    def dispatch(self, step: StepDef[D], attempt: int) -> None:
        if step.service in self.down:
            if step.on_unavailable == "wait":
                self.set_step(step.name, status="awaiting_service", attempt=attempt - 1)
                self.note(f"{step.name} waits: {step.service} is unavailable")
                return
            error = f"service {step.service!r} is unavailable (circuit open)"
            self.gave_up(step, error, unknown=self.steps[step.name].unknown)
            return
        try:
            payload = step.send(self.data)
        except Exception as exc:
            self.set_step(step.name, status="failed", error=_describe(exc))
            self.fail(f"send= of {step.name!r} raised {_describe(exc)}")
            return
        self.emit(step, "action", attempt, payload)
        self.set_step(step.name, status="dispatched", attempt=attempt)

    def emit(self, step: StepDef[D], kind: StepKind, attempt: int, payload: msgspec.Struct) -> None:
        saga_id = self.old.saga_id
        deadline = self.at + step.timeout if step.timeout is not None else None
        self.effects.append(
            Dispatch(
                message_id=f"{saga_id}:{step.name}:{kind}:{attempt}",
                idempotency_key=f"{saga_id}:{step.name}:{kind}",
                step=step.name,
                kind=kind,
                attempt=attempt,
                service=step.service,
                command=type(payload).__name__,
                payload=msgspec.Raw(msgspec.json.encode(payload)),
                deadline=deadline,
            )
        )
        if deadline is not None:
            self.timer(timer_name("timeout", step.name, kind, attempt), deadline)
        verb = "sent" if kind == "action" else "compensation sent"
        self.note(f"{step.name} {verb} (attempt {attempt})")

    def enter_wait(self, wait: WaitDef[D]) -> None:
        if self.steps[wait.name].status != "pending":
            return
        holds = self.holds(wait.when, wait.name)
        if holds is None:
            return
        if not holds:
            self.set_step(wait.name, status="skipped", finished_at=self.at)
            self.note(f"{wait.name} skipped")
            return
        self.set_step(wait.name, status="waiting")
        if wait.signal in self.signals:
            self.take_signal(wait, self.signals.pop(wait.signal))
            return
        self.note(f"{wait.name} waits for signal {wait.signal!r}")
        if wait.timeout is not None:
            self.timer(f"wait:{wait.name}", self.at + wait.timeout)

    def take_signal(self, wait: WaitDef[D], data: dict[str, object]) -> None:
        try:
            accepted = wait.accept is None or wait.accept(self.data, data)
            if accepted and wait.apply_signal is not None:
                self.data = wait.apply_signal(self.data, data)
        except Exception as exc:
            self.set_step(wait.name, status="failed", error=_describe(exc))
            self.fail(f"signal {wait.signal!r} could not be applied: {_describe(exc)}")
            return
        if wait.timeout is not None:
            self.cancel_timer(f"wait:{wait.name}")
        if not accepted:
            self.set_step(wait.name, status="failed", error="rejected", finished_at=self.at)
            self.fail(f"{wait.name}: signal {wait.signal!r} rejected")
            return
        self.set_step(wait.name, status="succeeded", finished_at=self.at)
        self.note(f"{wait.name}: signal {wait.signal!r} received")

    # -- settling a step ----------------------------------------------------

    def succeeded(self, step: StepDef[D], result: dict[str, object]) -> None:
        owes = step.undo is not None
        self.set_step(step.name, status="succeeded", owes=owes, error=None, finished_at=self.at)
        self.settled.append(step.name)
        self.note(f"{step.name} succeeded")
        if step.apply_result is not None and self.status == "running":
            try:
                self.data = step.apply_result(self.data, result)
            except Exception as exc:
                self.fail(f"result of {step.name!r} could not be applied: {_describe(exc)}")

    def gave_up(self, step: StepDef[D], error: str, *, unknown: bool) -> None:
        """The step's attempts are over without a success."""
        self.note(f"{step.name} gave up: {error}")
        if unknown:
            self.set_step(step.name, status="timed_out", owes=step.undo is not None, error=error)
            self.settled.append(step.name)
        else:
            self.set_step(step.name, status="failed", error=error)
        self.set_step(step.name, finished_at=self.at)
        if unknown and step.undo is None:
            # It may have applied and cannot be undone: neither way is safe.
            self.stop_forward()
            self.finish("failed", "failed", f"{step.name}: {error}; outcome unknown and no undo")
            return
        if self.status == "running":
            self.fail(f"{step.name}: {error}")

    def retry_or_give_up(
        self, step: StepDef[D], attempt: int, error: str, *, error_type: str | None, retryable: bool
    ) -> None:
        st = self.steps[step.name]
        unknown = st.unknown or error_type is None
        going_on = self.status == "running" or (step.pivot and unknown)
        if going_on and step.retry.allows(attempt, error_type=error_type, retryable=retryable):
            delay = step.retry.delay(attempt, seed=f"{self.old.saga_id}:{step.name}")
            self.set_step(step.name, status="retrying", unknown=unknown, error=error)
            self.timer(timer_name("retry", step.name, "action", attempt + 1), self.at + delay)
            self.note(
                f"{step.name} attempt {attempt} {error}; retry in {delay.total_seconds():.2f}s"
            )
            return
        self.set_step(step.name, unknown=unknown)
        self.gave_up(step, error, unknown=unknown)

    # -- backward -----------------------------------------------------------

    def fail(self, reason: str) -> None:
        """Something went wrong going forward: compensate, or stop if past the pivot."""
        if self.status != "running":
            return
        if self.pivot_passed:
            self.stop_forward()
            self.finish("failed", "failed", f"{reason} (after the pivot: no compensation)")
            return
        self.begin_compensation("compensated", reason)

    def begin_compensation(self, outcome: SagaStatus, reason: str) -> None:
        self.status = "compensating"
        self.outcome = outcome
        self.reason = reason
        self.note(f"compensating: {reason}")
        self.stop_forward()
        self.compensate_next()

    def stop_forward(self) -> None:
        """Abandon every step that is not out on the wire."""
        for name, st in self.steps.items():
            if self.resolving_pivot(name):
                continue  # it may have applied and cannot be undone: let it finish first
            if st.status == "retrying" or st.status == "awaiting_service":
                if st.status == "retrying":
                    self.cancel_timer(timer_name("retry", name, "action", st.attempt + 1))
                if st.unknown:
                    self.set_step(
                        name, status="timed_out", owes=self.defn.steps[name].undo is not None
                    )
                    self.settled.append(name)
                else:
                    self.set_step(name, status="abandoned")
            elif st.status == "waiting":
                if self.defn.waits[name].timeout is not None:
                    self.cancel_timer(f"wait:{name}")
                self.set_step(name, status="abandoned")
            elif st.status == "pending":
                self.set_step(name, status="abandoned")

    def resolving_pivot(self, name: str) -> bool:
        """The pivot is out, or timed out and retrying: its outcome decides the way."""
        st, step = self.steps[name], self.defn.steps.get(name)
        if step is None or not step.pivot:
            return False
        return st.status == "dispatched" or (
            st.unknown and st.status in ("retrying", "awaiting_service")
        )

    def resume_after_pivot(self) -> None:
        """The pivot succeeded after a cancel or the deadline: there is no way back now."""
        self.note(f"the pivot succeeded: going forward despite {self.reason!r}")
        self.status, self.outcome, self.reason = "running", None, None
        for name, st in self.steps.items():
            if st.status == "abandoned" and st.attempt == 0:
                self.set_step(name, status="pending")

    def compensate_next(self) -> None:
        if self.status != "compensating":
            return
        if any(s.status in ("dispatched", "compensating") for s in self.steps.values()):
            return  # let every branch settle first; one compensation at a time
        if any(self.resolving_pivot(name) for name in self.steps):
            return
        for name in reversed(self.settled):
            st = self.steps[name]
            if st.owes and st.status in ("succeeded", "timed_out"):
                self.compensate(self.defn.steps[name], st.compensation_attempt + 1)
                return
        assert self.outcome is not None
        event: LifecycleEvent = "cancelled" if self.outcome == "cancelled" else "compensated"
        self.finish(self.outcome, event, None)

    def compensate(self, step: StepDef[D], attempt: int) -> None:
        assert step.undo is not None
        try:
            payload = step.undo(self.data)
        except Exception as exc:
            self.compensation_exhausted(step, f"undo= raised {_describe(exc)}")
            return
        self.set_step(step.name, status="compensating", compensation_attempt=attempt, backoff=False)
        self.emit(step, "compensation", attempt, payload)

    def compensation_failed(self, step: StepDef[D], attempt: int, error: str) -> None:
        policy = self.defn.compensation_retry
        in_round = attempt - self.steps[step.name].compensation_base
        if policy.allows(in_round, error_type=None, retryable=True):
            delay = policy.delay(in_round, seed=f"{self.old.saga_id}:{step.name}:undo")
            self.set_step(step.name, error=error, backoff=True)
            self.timer(timer_name("retry", step.name, "compensation", attempt + 1), self.at + delay)
            self.note(
                f"{step.name} compensation {attempt} {error}; retry in {delay.total_seconds():.2f}s"
            )
            return
        self.compensation_exhausted(step, error)

    def compensation_exhausted(self, step: StepDef[D], error: str) -> None:
        self.set_step(step.name, status="compensation_failed", error=error)
        self.finish("failed", "failed", f"compensation of {step.name!r} failed: {error}")


# -- input handlers ------------------------------------------------------------


def _on_compensated(tx: _Tx[D], step: StepDef[D], inp: StepCompleted) -> bool:
    st = tx.steps[step.name]
    if st.status != "compensating" or not 1 <= inp.attempt <= st.compensation_attempt:
        tx.note(f"duplicate or late compensation reply for {step.name} ignored")
        return False
    if st.backoff:
        tx.cancel_timer(timer_name("retry", step.name, "compensation", st.compensation_attempt + 1))
    elif step.timeout is not None:
        tx.cancel_timer(timer_name("timeout", step.name, "compensation", st.compensation_attempt))
    tx.set_step(
        step.name,
        status="compensated",
        owes=False,
        error=None,
        backoff=False,
        finished_at=tx.at,
    )
    tx.note(f"{step.name} compensated")
    tx.compensate_next()
    return True


def _on_completed(tx: _Tx[D], inp: StepCompleted) -> bool:
    step = tx.defn.steps.get(inp.step)
    if step is None:
        tx.note(f"reply for unknown step {inp.step!r} ignored")
        return False
    st = tx.steps[step.name]
    if inp.kind == "compensation":
        return _on_compensated(tx, step, inp)
    if st.status in _ACCEPTS_SUCCESS and 1 <= inp.attempt <= st.attempt:
        if step.timeout is not None and st.status == "dispatched":
            tx.cancel_timer(timer_name("timeout", step.name, "action", st.attempt))
        elif st.status == "retrying":
            tx.cancel_timer(timer_name("retry", step.name, "action", st.attempt + 1))
        tx.succeeded(step, inp.result)
        if tx.status == "compensating" and step.pivot:
            tx.resume_after_pivot()
        if tx.status == "running":
            tx.advance()
        else:
            tx.compensate_next()
        return True
    if st.status in ("failed", "abandoned") and step.undo is not None and not st.owes:
        # It did apply after all (a reordered reply from an earlier attempt): undo it.
        tx.set_step(step.name, owes=True, status="succeeded")
        tx.settled.append(step.name)
        tx.note(f"late success of {step.name}: compensation owed")
        if tx.status == "running":
            tx.fail(f"{step.name} succeeded after it had failed")
        else:
            tx.compensate_next()
        return True
    tx.note(f"duplicate or late reply for {step.name} (attempt {inp.attempt}) ignored")
    return False


def _on_failed(tx: _Tx[D], inp: StepFailed) -> bool:
    step = tx.defn.steps.get(inp.step)
    if step is None:
        tx.note(f"reply for unknown step {inp.step!r} ignored")
        return False
    st = tx.steps[step.name]
    error = f"{inp.error_type}: {inp.error_message}"
    if inp.kind == "compensation":
        if st.status != "compensating" or st.backoff or inp.attempt != st.compensation_attempt:
            tx.note(f"duplicate or late compensation failure for {step.name} ignored")
            return False
        if step.timeout is not None:
            tx.cancel_timer(timer_name("timeout", step.name, "compensation", inp.attempt))
        tx.compensation_failed(step, inp.attempt, error)
        return True
    if st.status != "dispatched" or inp.attempt != st.attempt:
        tx.note(f"duplicate or late failure for {step.name} (attempt {inp.attempt}) ignored")
        return False
    if step.timeout is not None:
        tx.cancel_timer(timer_name("timeout", step.name, "action", inp.attempt))
    tx.retry_or_give_up(
        step, inp.attempt, error, error_type=inp.error_type, retryable=inp.retryable
    )
    if tx.status == "compensating":
        tx.compensate_next()
    return True


def _on_deadline(tx: _Tx[D]) -> bool:
    if tx.status != "running":
        return False
    if tx.pivot_passed:
        # Nothing can be undone any more; the steps after the pivot retry to the end.
        tx.note("deadline passed after the pivot: the saga keeps going forward")
        return False
    tx.fail(f"deadline of {tx.defn.deadline} exceeded")
    return True


def _on_timer(tx: _Tx[D], inp: TimerFired) -> bool:
    if inp.timer == DEADLINE_TIMER:
        return _on_deadline(tx)
    prefix, _, rest = inp.timer.partition(":")
    if prefix == "wait":
        return _on_wait_timeout(tx, rest)
    parts = rest.rsplit(":", 2)
    step = tx.defn.steps.get(parts[0])
    if step is None or len(parts) != 3 or not parts[2].isdigit():
        tx.note(f"unknown timer {inp.timer!r} ignored")
        return False
    name, kind, attempt = parts[0], parts[1], int(parts[2])
    st = tx.steps[name]
    if kind == "action":
        if prefix == "timeout" and st.status == "dispatched" and st.attempt == attempt:
            tx.retry_or_give_up(step, attempt, "timed out", error_type=None, retryable=True)
            if tx.status == "compensating":
                tx.compensate_next()
            return True
        if prefix == "retry" and st.status == "retrying" and st.attempt == attempt - 1:
            tx.dispatch(step, attempt)
            return True
    elif st.status == "compensating":
        if prefix == "timeout" and not st.backoff and st.compensation_attempt == attempt:
            tx.compensation_failed(step, attempt, "timed out")
            return True
        if prefix == "retry" and st.backoff and st.compensation_attempt == attempt - 1:
            tx.compensate(step, attempt)
            return True
    tx.note(f"stale timer {inp.timer} ignored")
    return False


def _on_wait_timeout(tx: _Tx[D], name: str) -> bool:
    wait = tx.defn.waits.get(name)
    if wait is None or tx.steps[name].status != "waiting" or tx.status != "running":
        tx.note(f"stale wait timer for {name!r} ignored")
        return False
    if wait.on_timeout == "continue":
        tx.set_step(name, status="skipped", finished_at=tx.at)
        tx.note(f"{name}: no signal {wait.signal!r} in time; continuing")
        tx.advance()
        return True
    tx.set_step(name, status="timed_out", error="no signal in time", finished_at=tx.at)
    tx.fail(f"{name}: no signal {wait.signal!r} within {wait.timeout}")
    return True


def _signal_refusal(tx: _Tx[D], inp: SignalReceived) -> str:
    """Why a signal cannot be taken by any wait it could reach, or ``""``.

    The data is checked when the signal arrives, also for a wait not reached yet:
    refusing it later would tell nobody, and the wait would go on without it.
    """
    waits = [w for w in tx.defn.waits.values() if w.signal == inp.name]
    if not waits:
        known = sorted({w.signal for w in tx.defn.waits.values()})
        expected = ", ".join(repr(k) for k in known) if known else "none"
        return f"saga {tx.defn.key} has no wait for signal {inp.name!r} (it waits for: {expected})"
    # While compensating every wait may come back (a pivot that still succeeds).
    open_ = (
        ("pending", "waiting", "abandoned")
        if tx.status == "compensating"
        else ("pending", "waiting")
    )
    reachable = [w for w in waits if tx.steps[w.name].status in open_]
    if not reachable:
        if any(tx.steps[w.name].status == "succeeded" for w in waits):
            # A second copy under a new id (a sender that retried): not news to anyone.
            return ""
        ended = ", ".join(f"{w.name!r} is {tx.steps[w.name].status}" for w in waits)
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


def _on_signal(tx: _Tx[D], inp: SignalReceived) -> bool:
    if inp.message_id in tx.seen_signals:
        tx.note(f"duplicate signal {inp.name!r} ignored")
        return False
    if tx.status not in ("running", "compensating"):
        return tx.refuse(f"saga is {tx.status}: it takes no more signals")
    refusal = _signal_refusal(tx, inp)
    if refusal:
        return tx.refuse(refusal)
    taken = [w.name for w in tx.defn.waits.values() if w.signal == inp.name]
    if tx.status == "running" and all(tx.steps[n].status == "succeeded" for n in taken):
        tx.note(f"signal {inp.name!r} ignored: {', '.join(taken)} already took one")
        return False
    tx.seen_signals = (*tx.seen_signals, inp.message_id)
    if tx.status == "compensating":
        # Kept: a pivot that still succeeds sends the saga forward again.
        tx.signals[inp.name] = inp.data
        tx.note(f"signal {inp.name!r} kept while compensating")
        return True
    nodes = tx.defn.nodes
    node = nodes[tx.cursor] if tx.cursor < len(nodes) else None
    if (
        isinstance(node, WaitDef)
        and node.signal == inp.name
        and tx.steps[node.name].status == "waiting"
    ):
        tx.take_signal(node, inp.data)
        tx.advance()
    else:
        tx.signals[inp.name] = inp.data
        tx.note(f"signal {inp.name!r} kept for later")
    return True


def _on_cancel(tx: _Tx[D], inp: CancelRequested) -> bool:
    if tx.status == "compensating":
        return tx.refuse(f"saga is already compensating: {tx.reason}")
    if tx.status != "running":
        return tx.refuse(f"saga is {tx.status}: there is nothing to cancel")
    if tx.pivot_passed:
        return tx.refuse("saga is past its pivot: it can only go forward now")
    tx.begin_compensation("cancelled", inp.reason)
    return True


def _on_recovered(tx: _Tx[D], inp: ServiceRecovered) -> bool:
    waiting = [
        tx.defn.steps[n]
        for n, s in tx.steps.items()
        if s.status == "awaiting_service" and tx.defn.steps[n].service == inp.service
    ]
    if tx.status not in ("running", "compensating") or not waiting:
        return False
    for step in waiting:
        tx.dispatch(step, tx.steps[step.name].attempt + 1)
    return True


def _on_retry(tx: _Tx[D], inp: RetryRequested) -> bool:
    stuck = [n for n, s in tx.steps.items() if s.status == "compensation_failed"]
    if tx.status != "failed" or not stuck:
        return tx.refuse(f"saga is {tx.status}: it has no failed compensation to retry")
    for name in stuck:
        st = tx.steps[name]
        status: StepStatus = "timed_out" if st.unknown else "succeeded"
        tx.set_step(name, status=status, compensation_base=st.compensation_attempt)
    tx.status = "compensating"
    tx.finished_at = None
    tx.note(f"operator retry of compensation: {', '.join(stuck)}")
    tx.compensate_next()
    return True


def _apply(tx: _Tx[D], inp: Input) -> bool:
    match inp:
        case StepCompleted():
            return _on_completed(tx, inp)
        case StepFailed():
            return _on_failed(tx, inp)
        case TimerFired():
            return _on_timer(tx, inp)
        case SignalReceived():
            return _on_signal(tx, inp)
        case CancelRequested():
            return _on_cancel(tx, inp)
        case ServiceRecovered():
            return _on_recovered(tx, inp)
        case RetryRequested():
            return _on_retry(tx, inp)


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
    tx = _Tx(defn, state, inp)
    tx.effects.append(Notify(event="started"))
    tx.note("saga started")
    if deadline_at is not None:
        tx.timer(DEADLINE_TIMER, deadline_at)
    tx.advance()
    return tx.decision()


def decide(defn: SagaDefinition[D], state: SagaState[D], inp: Input) -> Decision[D]:
    """Apply one input to a saga.

    Returns the new state and the effects to carry out, or, when the input is a
    duplicate, late or does not apply, the unchanged state with ``changed=False``
    and a note saying why; ``refused`` too when a signal, a cancel or a retry is
    not allowed, so its sender can be told.
    """
    if state.terminal and not isinstance(inp, SignalReceived | CancelRequested | RetryRequested):
        # Recorded in the history by the caller; a terminal saga never changes again.
        return Decision(
            state=state, effects=(), note=f"saga is {state.status}; ignored", changed=False
        )
    tx = _Tx(defn, state, inp)
    if not _apply(tx, inp):
        return Decision(
            state=state,
            effects=(),
            note="; ".join(tx.notes) or "ignored",
            changed=False,
            refused=tx.refused,
        )
    return tx.decision()
