"""Property tests: random valid sagas driven by a random, misbehaving world.

The world is a simulation around :func:`decide`: commands the saga sends are "in
flight" until the world delivers them to a participant, whose reply is then
delivered, duplicated, reordered or lost; timers fire when the world advances its
virtual clock; signals, cancels and circuit-breaker changes come at random. Each
run ends with a drain that lets every saga finish, then the invariants are checked.

The participant model follows the participant contract (DESIGN.md section 4): a
handler either applies its effect and returns a result, or applies nothing and
fails. It records a success (and a non-retryable failure) under the idempotency
key and replays it for any later delivery of that key; a retryable failure is not
recorded, so a retry really executes. A compensation that ran leaves a tombstone,
so an action delivered after its own compensation is refused rather than applied.

Checked on every decision: (b) each (step, kind, attempt) is dispatched once, attempts
count up by one, no action goes through an open circuit; (d) a terminal saga never
changes; (e) the revision grows by one per change and not otherwise, and an unchanged
decision has no effects; a duplicate reply, signal or stale timer changes nothing;
``settled`` grows by exactly the steps that succeeded or timed out; every change of a
step's status is one ``STEP_TRANSITIONS`` allows (a decision may chain several of them).

Pause and resume come at random too. While paused (g) nothing is dispatched and no
state changes but the inputs held; a duplicate is still only recorded; resume (or a
cancel, which ends the pause) applies everything held, and the deadline, if held,
moves on by exactly the time paused.

Checked at the end: (a) the saga is terminal; (c) when it ended compensated or
cancelled, every step that applied at its participant, or whose outcome is unknown,
was compensated exactly once and nothing else was, in reverse order of settling,
and the pivot neither applied nor may have; (f) a completed saga ran or skipped every
step and compensated nothing; ``failed`` only ever means a compensation exhausted,
a failure after the pivot, or an unknown outcome that cannot be undone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator._dsl import Saga
from coordinator.core import (
    STEP_TRANSITIONS,
    CancelRequested,
    CancelTimer,
    Decision,
    Dispatch,
    Input,
    ParallelDef,
    PauseRequested,
    ResumeRequested,
    Retry,
    RetryRequested,
    SagaDefinition,
    SagaState,
    ServiceRecovered,
    SignalReceived,
    Start,
    StartTimer,
    StepCompleted,
    StepDef,
    StepFailed,
    StepState,
    StepStatus,
    TimerFired,
    WaitDef,
    decide,
    start,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERVICES = ("s1", "s2", "s3")
SIGNALS = ("sig_a", "sig_b")
FLAGS = 6
AFTER_SETTLING = frozenset(
    {
        "succeeded",
        "timed_out",
        "compensating",
        "compensation_awaiting_service",
        "compensated",
        "compensation_failed",
    }
)
STILL_ACTIVE = frozenset(
    {
        "pending",
        "dispatched",
        "retrying",
        "awaiting_service",
        "waiting",
        "compensating",
        "compensation_awaiting_service",
    }
)
# A step whose undo is out or parked: at most one at a time.
UNDOING = frozenset({"compensating", "compensation_awaiting_service"})


def _chains(old: StepStatus, new: StepStatus) -> bool:
    """Whether ``new`` follows ``old`` through one or more allowed transitions."""
    seen: set[StepStatus] = set()
    frontier = {old}
    while frontier:
        after = {n for s in frontier for n in STEP_TRANSITIONS[s]} - seen
        if new in after:
            return True
        seen |= after
        frontier = after
    return False


def check_transitions(old_steps: dict[str, StepState], new: SagaState[Data]) -> None:
    """Every change of a step's status in one decision is allowed by ``STEP_TRANSITIONS``."""
    for name, st_ in new.steps.items():
        was = old_steps[name].status if name in old_steps else "pending"
        if was != st_.status:
            assert _chains(was, st_.status), f"{name}: {was} -> {st_.status} is not allowed"


def test_every_step_status_has_its_transitions() -> None:
    assert set(STEP_TRANSITIONS) == set(get_args(StepStatus))
    assert all(set(after) <= set(STEP_TRANSITIONS) for after in STEP_TRANSITIONS.values())


# -- the saga's data and commands ----------------------------------------------------------


class Data(msgspec.Struct, frozen=True):
    flags: tuple[bool, ...]
    approvals: int = 0


class Do(msgspec.Struct):
    step: str


class Undo(msgspec.Struct):
    step: str


class Sig(msgspec.Struct):
    ok: bool = True


# -- random definitions --------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    name: str
    service: str
    attempts: int
    backoff: int
    timeout: int | None
    when_flag: int | None
    on_unavailable: str
    undo: bool
    pivot: bool = False


@dataclass(frozen=True)
class WaitSpec:
    name: str
    signal: str
    timeout: int | None
    on_timeout: str
    when_flag: int | None
    accept: bool


@dataclass(frozen=True)
class GroupSpec:
    name: str
    branches: tuple[StepSpec, ...]


NodeSpec = StepSpec | WaitSpec | GroupSpec


@dataclass(frozen=True)
class SagaSpec:
    nodes: tuple[NodeSpec, ...]
    deadline: int | None
    compensation_attempts: int


@st.composite
def step_specs(
    draw: st.DrawFn, name: str, *, undo: bool, pivot: bool = False, risky: bool = False
) -> StepSpec:
    return StepSpec(
        name=name,
        service=draw(st.sampled_from(SERVICES)),
        # A risky step times out and retries: its outcome can be unknown for a while.
        attempts=draw(st.integers(2, 3) if risky else st.integers(1, 3)),
        backoff=draw(st.sampled_from((1, 2, 5, 20))),
        timeout=draw(st.integers(1, 10) if risky else st.none() | st.integers(1, 10)),
        when_flag=None if pivot else draw(st.none() | st.integers(0, FLAGS - 1)),
        on_unavailable=draw(st.sampled_from(("wait", "compensate"))),
        undo=undo,
        pivot=pivot,
    )


@st.composite
def saga_specs(draw: st.DrawFn, *, risky_pivot: bool = False) -> SagaSpec:
    count = draw(st.integers(1, 5))
    pivot_at = draw(
        st.integers(0, count - 1) if risky_pivot else st.none() | st.integers(0, count - 1)
    )
    names = iter(f"n{i}" for i in range(100))
    nodes: list[NodeSpec] = []
    for i in range(count):
        undo = pivot_at is None or i < pivot_at
        if i == pivot_at:
            pivot = step_specs(next(names), undo=False, pivot=True, risky=risky_pivot)
            nodes.append(draw(pivot))
            continue
        kind = draw(st.sampled_from(("step", "parallel", "wait")))
        if kind == "step":
            nodes.append(draw(step_specs(next(names), undo=undo)))
        elif kind == "parallel":
            width = draw(st.integers(2, 3))
            branches = tuple(draw(step_specs(next(names), undo=undo)) for _ in range(width))
            nodes.append(GroupSpec(name=next(names), branches=branches))
        else:
            nodes.append(
                WaitSpec(
                    name=next(names),
                    signal=draw(st.sampled_from(SIGNALS)),
                    timeout=draw(st.none() | st.integers(1, 30)),
                    on_timeout=draw(st.sampled_from(("compensate", "continue"))),
                    when_flag=draw(st.none() | st.integers(0, FLAGS - 1)),
                    accept=draw(st.booleans()),
                )
            )
    return SagaSpec(
        nodes=tuple(nodes),
        deadline=draw(st.none() | st.integers(30, 200)),
        compensation_attempts=draw(st.integers(1, 3)),
    )


def build(spec: SagaSpec) -> SagaDefinition[Data]:
    saga: Saga[Data] = Saga(
        "prop",
        data=Data,
        deadline=timedelta(seconds=spec.deadline) if spec.deadline is not None else None,
        compensation_retry=Retry(
            attempts=spec.compensation_attempts,
            backoff=timedelta(seconds=1),
            max_backoff=timedelta(seconds=4),
        ),
    )

    def flag(index: int | None) -> Any:
        return None if index is None else (lambda d: d.flags[index])

    def make_step(sp: StepSpec) -> StepDef[Data]:
        return saga.step(
            sp.name,
            service=sp.service,
            send=lambda d, n=sp.name: Do(step=n),
            undo=(lambda d, n=sp.name: Undo(step=n)) if sp.undo else None,
            retry=Retry(
                attempts=sp.attempts,
                backoff=timedelta(seconds=sp.backoff),
                max_backoff=timedelta(seconds=4 * sp.backoff),
                give_up_on=["Fatal"],
            ),
            timeout=timedelta(seconds=sp.timeout) if sp.timeout is not None else None,
            when=flag(sp.when_flag),
            on_unavailable=sp.on_unavailable,  # type: ignore[arg-type]
            pivot=sp.pivot,
        )

    nodes: list[StepDef[Data] | WaitDef[Data] | ParallelDef[Data]] = []
    for node in spec.nodes:
        if isinstance(node, StepSpec):
            nodes.append(make_step(node))
        elif isinstance(node, GroupSpec):
            nodes.append(saga.parallel(node.name, *(make_step(b) for b in node.branches)))
        else:
            nodes.append(
                saga.wait_for(
                    node.signal,
                    name=node.name,
                    timeout=timedelta(seconds=node.timeout) if node.timeout is not None else None,
                    on_timeout=node.on_timeout,  # type: ignore[arg-type]
                    when=flag(node.when_flag),
                    data=Sig,
                    accept=(lambda d, s: s.ok) if node.accept else None,
                    merge=lambda d, s: msgspec.structs.replace(d, approvals=d.approvals + 1),
                )
            )
    return saga.define(*nodes)


# -- the participants ----------------------------------------------------------------------

# How a participant answers a step's action: ("apply", k) fails retryably before attempt k
# and applies from attempt k on; ("fail", error_type, retryable) never applies.
ActionPlan = tuple[str, int] | tuple[str, str, bool]
# How it answers the compensation: fail retryably this many times, then undo; -1: never.
CompensationPlan = int

_applies = st.tuples(st.just("apply"), st.sampled_from((1, 1, 1, 2, 3)))
_fails = st.tuples(st.just("fail"), st.sampled_from(("Boom", "Fatal")), st.booleans())
action_plans = st.one_of(_applies, _applies, _applies, _fails)  # mostly applies
compensation_plans = st.sampled_from((0, 0, 1, 2, -1))


@dataclass
class Participants:
    actions: dict[str, ActionPlan]
    compensations: dict[str, CompensationPlan]
    recorded: dict[tuple[str, str], tuple[str, str, bool]] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)
    compensation_calls: Counter[str] = field(default_factory=Counter)
    replies: int = 0

    def handle(self, cmd: Dispatch, at: datetime) -> Input:
        """Process one delivery of a command and return the reply it produces."""
        key = (cmd.step, cmd.kind)
        outcome = self.recorded.get(key)
        if outcome is None:
            outcome = self._act(cmd)
        self.replies += 1
        mid = f"reply-{self.replies}"
        kind, error_type, retryable = outcome
        if kind == "ok":
            return StepCompleted(
                message_id=mid, step=cmd.step, kind=cmd.kind, attempt=cmd.attempt, at=at
            )
        return StepFailed(
            message_id=mid,
            step=cmd.step,
            kind=cmd.kind,
            attempt=cmd.attempt,
            error_type=error_type,
            error_message="simulated",
            retryable=retryable,
            at=at,
        )

    def _act(self, cmd: Dispatch) -> tuple[str, str, bool]:
        key = (cmd.step, cmd.kind)
        if cmd.kind == "compensation":
            calls = self.compensation_calls[cmd.step]
            self.compensation_calls[cmd.step] += 1
            plan = self.compensations[cmd.step]
            if plan < 0 or calls < plan:
                return ("failed", "Busy", True)
            self.undone.add(cmd.step)
            self.recorded[key] = ("ok", "", True)
            return self.recorded[key]
        if (cmd.step, "compensation") in self.recorded:
            # Compensated before the action arrived: the tombstone refuses it.
            self.recorded[key] = ("failed", "AlreadyCompensated", False)
            return self.recorded[key]
        plan = self.actions[cmd.step]
        if plan[0] == "apply":
            if cmd.attempt >= plan[1]:
                self.applied.add(cmd.step)
                self.recorded[key] = ("ok", "", True)
                return self.recorded[key]
            return ("failed", "Busy", True)
        _, error_type, retryable = plan
        assert isinstance(error_type, str) and isinstance(retryable, bool)
        if not retryable:
            self.recorded[key] = ("failed", error_type, False)
        return ("failed", error_type, retryable)


# -- the world -----------------------------------------------------------------------------


class World:
    def __init__(self, defn: SagaDefinition[Data], data: Data, participants: Participants) -> None:
        self.defn = defn
        self.participants = participants
        self.now = T0
        self.down: frozenset[str] = frozenset()
        self.inflight: list[Dispatch] = []
        self.processed: list[Dispatch] = []
        self.delivered: list[Input] = []
        self.timers: dict[str, datetime] = {}
        self.dead_timers: list[str] = []
        self.sent: Counter[str] = Counter()
        self.attempts: dict[tuple[str, str], int] = {}
        self.compensation_order: list[str] = []
        self.compensation_successes: Counter[str] = Counter()
        self.signals_sent: list[SignalReceived] = []
        self.pivot_succeeded = False
        self.compensations_after_pivot: list[str] = []
        # The outcome ("ok" or "failed") of every (step, kind, attempt) the saga took a reply for.
        self.answered: dict[tuple[str, str, int], str] = {}
        self.retries = 0
        self.pauses = 0
        first = start(defn, Start(saga_id="p1", data=data, at=T0))
        assert first.changed
        assert first.state.revision == 1
        self.state: SagaState[Data] = first.state
        self.absorb(None, first, None)

    # -- feeding the machine ---------------------------------------------------------

    def feed(self, inp: Input, *, duplicate: bool = False) -> Decision[Data]:
        before = self.state
        d = decide(self.defn, before, inp)
        if d.changed:
            # (e) the revision grows by exactly one per change...
            assert d.state.revision == before.revision + 1
        else:
            # ...and not at all otherwise; nothing is asked of the world either.
            assert d.state is before
            assert d.effects == ()
        if before.terminal and not (isinstance(inp, RetryRequested) and self.can_retry(before)):
            # (d) a terminal saga never changes again, but for an operator's retry of a
            # failed compensation.
            assert not d.changed, (before.status, inp)
        if duplicate:
            assert not d.changed, f"a duplicate changed the saga: {inp!r}: {d.note}"
        if d.state.paused:
            self.check_paused(before, d, inp)
        self.absorb(before, d, inp)
        self.state = d.state
        if d.changed and isinstance(inp, StepCompleted | StepFailed):
            outcome = "ok" if isinstance(inp, StepCompleted) else "failed"
            self.answered.setdefault((inp.step, inp.kind, inp.attempt), outcome)
        return d

    def check_paused(self, before: SagaState[Data], d: Decision[Data], inp: Input) -> None:
        """(g) A paused saga sends nothing and changes nothing but what it holds."""
        assert not any(isinstance(e, Dispatch | StartTimer) for e in d.effects), d.effects
        if not d.changed or not before.paused:
            return
        assert d.state.held == (*before.held, inp)
        expected = msgspec.structs.replace(
            before, revision=d.state.revision, updated_at=inp.at, held=d.state.held
        )
        assert d.state == expected

    @staticmethod
    def can_retry(state: SagaState[Data]) -> bool:
        return state.status == "failed" and any(
            s.status == "compensation_failed" for s in state.steps.values()
        )

    def absorb(self, before: SagaState[Data] | None, d: Decision[Data], inp: Input | None) -> None:
        new = d.state
        pivots = [s.name for s in self.defn.steps.values() if s.pivot]
        if d.changed and pivots and new.steps[pivots[0]].status == "succeeded":
            self.pivot_succeeded = True  # before the effects: they may undo things already
        for effect in d.effects:
            if isinstance(effect, Dispatch):
                self.on_dispatch(effect)
            elif isinstance(effect, StartTimer):
                assert effect.due >= new.updated_at, effect
                self.check_due(effect, new)
                self.timers[effect.timer] = effect.due
            elif (
                isinstance(effect, CancelTimer) and self.timers.pop(effect.timer, None) is not None
            ):
                self.dead_timers.append(effect.timer)
        assert d.note
        if not d.changed:
            return
        # One compensation at a time, and none while an action is still out: compensations
        # start only after every dispatched step (every branch of a group) has settled.
        compensating = [n for n, s in new.steps.items() if s.status in UNDOING]
        assert len(compensating) <= 1, f"compensations in flight at once: {compensating}"
        undos = {e.step for e in d.effects if isinstance(e, Dispatch) and e.kind == "compensation"}
        # A resume replays its held inputs as one decision: each may send the next undo.
        replayed = len(before.held) if before is not None and before.paused else 0
        assert len(undos) <= 1 + replayed, f"compensations sent at once: {undos}"
        if undos:
            out = [n for n, s in new.steps.items() if s.status == "dispatched"]
            assert not out, f"compensation of {undos} sent while {out} still dispatched"
        assert new.updated_at == (inp.at if inp is not None else new.started_at)
        old_steps = before.steps if before is not None else {}
        check_transitions(old_steps, new)
        newly: list[str] = []
        for name, st_ in new.steps.items():
            old = old_steps.get(name)
            if name not in self.defn.steps:
                continue  # waits are not compensated, so they do not settle
            # A step can settle and start compensating within one decision.
            if st_.status in AFTER_SETTLING and (old is None or old.status not in AFTER_SETTLING):
                newly.append(name)
        # ``settled`` records exactly the steps that succeeded or timed out, when they did.
        old_settled = before.settled if before is not None else ()
        assert new.settled[: len(old_settled)] == old_settled
        assert sorted(new.settled[len(old_settled) :]) == sorted(newly), (new.settled, newly)
        assert len(set(new.settled)) == len(new.settled)
        if isinstance(inp, StepCompleted) and inp.kind == "compensation" and not new.paused:
            assert new.steps[inp.step].status == "compensated"
        self.count_compensations(old_steps, new)

    def count_compensations(self, old_steps: dict[str, StepState], new: SagaState[Data]) -> None:
        # Counted when it happens: a success held while paused counts on resume.
        for name, st_ in new.steps.items():
            if st_.status == "compensated" and old_steps[name].status != "compensated":
                self.compensation_successes[name] += 1

    def check_due(self, timer: StartTimer, new: SagaState[Data]) -> None:
        """Timeouts, backoffs and the deadline fall due when the definition says."""
        at = new.updated_at
        if timer.timer == "deadline":
            assert self.defn.deadline is not None
            # Moved on by the time held paused (``hold_deadline``), else as started.
            assert timer.due == new.deadline_at, timer
            if not self.pauses:
                assert timer.due == new.started_at + self.defn.deadline, timer
            return
        if timer.timer.startswith("wait:"):
            wait = self.defn.waits[timer.timer.removeprefix("wait:")]
            assert wait.timeout is not None
            assert timer.due == at + wait.timeout, timer
            return
        prefix, step, kind, _attempt = timer.timer.split(":")
        definition = self.defn.steps[step]
        if prefix == "timeout":
            assert definition.timeout is not None
            assert timer.due == at + definition.timeout, timer
        elif prefix == "retry":
            policy = definition.retry if kind == "action" else self.defn.compensation_retry
            assert timedelta(0) <= timer.due - at <= policy.max_backoff, timer

    def on_dispatch(self, cmd: Dispatch) -> None:
        # (b) each (step, kind, attempt) is sent once, and attempts count up by one.
        assert self.sent[cmd.message_id] == 0, f"sent twice: {cmd.message_id}"
        self.sent[cmd.message_id] += 1
        assert cmd.message_id == f"p1:{cmd.step}:{cmd.kind}:{cmd.attempt}"
        assert cmd.idempotency_key == f"p1:{cmd.step}:{cmd.kind}"
        key = (cmd.step, cmd.kind)
        assert cmd.attempt == self.attempts.get(key, 0) + 1
        self.attempts[key] = cmd.attempt
        step = self.defn.steps[cmd.step]
        assert cmd.service == step.service
        if cmd.kind == "action":
            assert cmd.service not in self.down, "an action was sent through an open circuit"
            assert cmd.command == "Do"
            assert cmd.attempt <= step.retry.attempts, "more attempts than the retry allows"
            if cmd.deadline is not None:
                assert step.timeout is not None
        else:
            assert step.undo is not None
            assert cmd.service not in self.down, "an undo was sent through an open circuit"
            assert cmd.command == "Undo"
            # Once the saga took the compensation's success, it never asks for it again.
            assert self.compensation_successes[cmd.step] == 0, f"{cmd.step} undone twice"
            if cmd.step not in self.compensation_order:
                self.compensation_order.append(cmd.step)
            if self.pivot_succeeded:
                self.compensations_after_pivot.append(cmd.step)
        self.inflight.append(cmd)

    def inp_kwargs(self) -> dict[str, Any]:
        return {"at": self.now, "services_down": self.down}

    # -- what the world can do ------------------------------------------------------------

    def deliver(self, index: int, *, reply: bool = True) -> None:
        cmd = self.inflight.pop(index)
        self.processed.append(cmd)
        answer = self.participants.handle(cmd, self.now)
        if reply:
            answer = msgspec.structs.replace(answer, services_down=self.down)
            self.delivered.append(answer)
            self.feed(answer)

    def lose(self, index: int) -> None:
        cmd = self.inflight.pop(index)
        assert cmd.deadline is not None  # only commands a timeout will notice are lost

    def redeliver(self, index: int) -> None:
        cmd = self.processed[index]
        answer = self.participants.handle(cmd, self.now)
        # A second reply (a new message id) to an attempt the saga already took an answer
        # for, with the same outcome, is a duplicate: matched by (step, kind, attempt), it
        # changes nothing. A different outcome (a retried compensation that now succeeds,
        # a late success) may change the saga; that is the README's exception.
        outcome = "ok" if isinstance(answer, StepCompleted) else "failed"
        again = self.answered.get((cmd.step, cmd.kind, cmd.attempt)) == outcome
        self.feed(msgspec.structs.replace(answer, services_down=self.down), duplicate=again)

    def duplicate(self, index: int) -> None:
        self.feed(self.delivered[index], duplicate=True)

    def fire_next_timer(self) -> None:
        name, due = min(self.timers.items(), key=lambda kv: (kv[1], kv[0]))
        del self.timers[name]
        self.dead_timers.append(name)
        self.now = max(self.now, due)
        self.feed(TimerFired(timer=name, **self.inp_kwargs()))

    def fire_stale_timer(self, index: int) -> None:
        # A timer the poller picked up just before the saga cancelled it (or a second
        # delivery of one that fired): it must change nothing.
        name = self.dead_timers[index]
        if name in self.timers:
            return
        self.feed(TimerFired(timer=name, **self.inp_kwargs()), duplicate=True)

    def signal(self, name: str, ok: bool) -> None:
        sig = SignalReceived(
            message_id=f"sig-{len(self.signals_sent)}",
            name=name,
            data={"ok": ok},
            **self.inp_kwargs(),
        )
        self.signals_sent.append(sig)
        self.feed(sig)

    def resend_signal(self, index: int) -> None:
        self.feed(self.signals_sent[index], duplicate=True)

    def cancel(self) -> None:
        self.feed(CancelRequested(**self.inp_kwargs()))

    def retry(self) -> None:
        """An operator's retry: it revives a failed compensation and changes nothing else."""
        possible = self.can_retry(self.state)
        self.retries += 1
        inp = RetryRequested(**self.inp_kwargs())
        d = self.feed(inp)
        assert d.changed == possible, (possible, d.note)

    def pause(self, hold: bool) -> None:
        before = self.state
        self.pauses += 1
        d = self.feed(PauseRequested(by="prop", hold_deadline=hold, **self.inp_kwargs()))
        assert d.changed == (not before.terminal and not before.paused), d.note
        assert d.refused == ("" if d.changed else d.refused) and (d.changed or d.refused)

    def resume(self) -> None:
        before = self.state
        d = self.feed(ResumeRequested(by="prop", **self.inp_kwargs()))
        assert d.changed == before.paused, d.note
        if not d.changed:
            assert d.refused
            return
        assert not d.state.paused and d.state.held == ()
        if before.hold_deadline and before.deadline_at and before.paused_at:
            moved = max(before.deadline_at + (self.now - before.paused_at), self.now)
            assert d.state.deadline_at == moved
        else:
            assert d.state.deadline_at == before.deadline_at

    def recover(self, service: str) -> None:
        self.down = self.down - {service}
        self.feed(ServiceRecovered(service=service, **self.inp_kwargs()))

    def advance_clock(self, seconds: int) -> None:
        due = min(self.timers.values(), default=None)
        target = self.now + timedelta(seconds=seconds)
        self.now = min(target, due) if due is not None and due > self.now else target

    # -- the end ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Let the saga finish: reply to everything, close circuits, signal, fire timers."""
        self.down = frozenset()
        for _ in range(1000):
            if self.state.terminal:
                return
            if self.state.paused:
                self.resume()
                continue
            waiting_for_service = sorted(
                {
                    self.defn.steps[n].service
                    for n, s in self.state.steps.items()
                    if s.status in ("awaiting_service", "compensation_awaiting_service")
                }
            )
            waiting = [
                w for w in self.defn.waits.values() if self.state.steps[w.name].status == "waiting"
            ]
            if self.inflight:
                self.deliver(0)
            elif waiting_for_service:
                self.recover(waiting_for_service[0])
            elif waiting:
                self.signal(waiting[0].signal, True)
            elif self.timers:
                self.fire_next_timer()
            else:
                raise AssertionError(f"the saga is stuck: {self.state}")
        raise AssertionError("the saga did not end")

    def poke_terminal(self) -> None:
        """(d) Once terminal, nothing changes anything."""
        assert self.state.terminal
        final = self.state
        while self.inflight:
            self.deliver(0)
        for i in range(min(len(self.delivered), 5)):
            self.feed(self.delivered[-1 - i])
        for name in sorted({*self.timers, *self.dead_timers}):
            self.feed(TimerFired(timer=name, at=self.now + timedelta(hours=1)))
        for name in (*SIGNALS, "noise"):
            self.signal(name, True)
        self.cancel()
        self.pause(hold=True)
        self.resume()
        for service in SERVICES:
            self.recover(service)
        assert self.state is final


# -- the property --------------------------------------------------------------------------

# Repeated entries are likelier: a world that mostly answers, sometimes misbehaves.
CHOICES = (
    "deliver",
    "deliver",
    "deliver",
    "deliver",
    "timer",
    "timer",
    "drop_reply",
    "lose_command",
    "redeliver_command",
    "duplicate_reply",
    "stale_timer",
    "signal",
    "resend_signal",
    "cancel",
    "retry",
    "recover",
    "circuit",
    "clock",
    "pause",
    "resume",
)


def _index(data: st.DataObject, items: list[Any], label: str) -> int:
    return data.draw(st.integers(0, len(items) - 1), label=label)


def _droppable(world: World) -> list[int]:
    return [i for i, c in enumerate(world.inflight) if c.deadline is not None]


def _signal(world: World, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from((*SIGNALS, "noise")), label="signal")
    world.signal(name, data.draw(st.booleans(), label="ok"))


def _circuit(world: World, data: st.DataObject) -> None:
    world.down = data.draw(st.frozensets(st.sampled_from(SERVICES)), label="down")


ACTIONS: dict[str, tuple[Callable[[World], bool], Callable[[World, st.DataObject], None]]] = {
    "deliver": (
        lambda w: bool(w.inflight),
        lambda w, d: w.deliver(_index(d, w.inflight, "deliver")),
    ),
    "timer": (lambda w: bool(w.timers), lambda w, d: w.fire_next_timer()),
    "drop_reply": (
        lambda w: bool(_droppable(w)),
        lambda w, d: w.deliver(d.draw(st.sampled_from(_droppable(w)), label="drop"), reply=False),
    ),
    "lose_command": (
        lambda w: bool(_droppable(w)),
        lambda w, d: w.lose(d.draw(st.sampled_from(_droppable(w)), label="lose")),
    ),
    "redeliver_command": (
        lambda w: bool(w.processed),
        lambda w, d: w.redeliver(_index(d, w.processed, "redeliver")),
    ),
    "duplicate_reply": (
        lambda w: bool(w.delivered),
        lambda w, d: w.duplicate(_index(d, w.delivered, "duplicate")),
    ),
    "stale_timer": (
        lambda w: bool(w.dead_timers),
        lambda w, d: w.fire_stale_timer(_index(d, w.dead_timers, "stale")),
    ),
    "signal": (lambda w: True, _signal),
    "resend_signal": (
        lambda w: bool(w.signals_sent),
        lambda w, d: w.resend_signal(_index(d, w.signals_sent, "resend")),
    ),
    "cancel": (lambda w: True, lambda w, d: w.cancel()),
    "retry": (lambda w: True, lambda w, d: w.retry()),
    "recover": (
        lambda w: True,
        lambda w, d: w.recover(d.draw(st.sampled_from(SERVICES), label="recover")),
    ),
    "circuit": (lambda w: True, _circuit),
    "pause": (lambda w: True, lambda w, d: w.pause(d.draw(st.booleans(), label="hold"))),
    "resume": (lambda w: True, lambda w, d: w.resume()),
    "clock": (
        lambda w: True,
        lambda w, d: w.advance_clock(d.draw(st.integers(1, 20), label="seconds")),
    ),
}


def play(
    world: World, data: st.DataObject, budget: int, always: frozenset[str] = frozenset()
) -> None:
    # Swarm testing: each run allows only some kinds of trouble, so that rarer sequences
    # (lose a reply, let it time out, cancel in the backoff) are not drowned by the rest.
    trouble = sorted(set(CHOICES) - {"deliver", "timer"})
    drawn = data.draw(st.sets(st.sampled_from(trouble)), label="trouble")
    allowed = {"deliver", "timer", *always, *drawn}
    for _ in range(budget):
        if world.state.terminal:
            if "retry" in allowed and world.can_retry(world.state):
                world.retry()
                continue
            return
        available = [c for c in CHOICES if c in allowed and ACTIONS[c][0](world)]
        if not available:
            return
        choice = data.draw(st.sampled_from(available), label="choice")
        ACTIONS[choice][1](world, data)


def check_outcome(world: World, spec: SagaSpec) -> None:
    state = world.state
    defn = world.defn
    # (a) every saga ends, in one of the four terminal statuses.
    assert state.status in SagaState.TERMINAL
    assert state.finished_at is not None
    undo_steps = {n for n, s in defn.steps.items() if s.undo is not None}
    compensated_steps = set(world.compensation_order)

    if state.status == "completed":
        # (f) everything ran (or was skipped) and nothing was undone.
        for name, st_ in state.steps.items():
            assert st_.status in ("succeeded", "skipped"), (name, st_)
        assert not compensated_steps
        assert not any(c.kind == "compensation" for c in world.processed)
        assert state.cursor == len(defn.nodes)

    if state.status in ("compensated", "cancelled"):
        # (c) exactly the steps that may have applied are undone, once, in reverse order.
        for name, st_ in state.steps.items():
            assert st_.status not in STILL_ACTIVE, (name, st_)
            assert not st_.owes, (name, st_)
        for name in undo_steps:
            # Owed: it applied, or some attempt timed out so it may have (``unknown``).
            owed = name in world.participants.applied or state.steps[name].unknown
            if owed:
                assert world.compensation_successes[name] == 1, (name, state.steps[name])
                assert state.steps[name].status == "compensated"
            else:
                assert name not in compensated_steps, (name, state.steps[name])
                assert world.compensation_successes[name] == 0
        applied_with_undo = world.participants.applied & undo_steps
        assert applied_with_undo <= world.participants.undone, (
            applied_with_undo - world.participants.undone
        )
        # After the point of no return there is no way back.
        pivots = [s.name for s in defn.steps.values() if s.pivot]
        if pivots:
            pivot = state.steps[pivots[0]]
            assert pivots[0] not in world.participants.applied, (
                f"the pivot {pivots[0]!r} applied but the saga ended {state.status}"
            )
            # Nor while the pivot may have applied, as far as the saga can know.
            assert not pivot.unknown, f"the pivot may have applied: {pivot}"
    assert not world.compensations_after_pivot, world.compensations_after_pivot
    # Compensations, whatever the ending, run one step at a time in reverse order of settling.
    expected = [n for n in reversed(state.settled) if n in compensated_steps]
    assert world.compensation_order == expected, (world.compensation_order, state.settled)

    if state.status == "failed":
        # Only three things end a saga failed: a compensation that could not be done, a
        # failure after the pivot, or a step without undo whose outcome is unknown.
        assert state.reason
        exhausted = any(s.status == "compensation_failed" for s in state.steps.values())
        past_pivot = any(
            s.pivot and state.steps[n].status == "succeeded" for n, s in defn.steps.items()
        )
        unknown_no_undo = any(
            s.undo is None and state.steps[n].unknown for n, s in defn.steps.items()
        )
        assert exhausted or past_pivot or unknown_no_undo, state
        if exhausted:
            assert "compensation of" in state.reason

    if state.status == "cancelled":
        assert state.outcome == "cancelled"


def run_world(spec: SagaSpec, data: st.DataObject, always: frozenset[str] = frozenset()) -> None:
    defn = build(spec)
    flags = tuple(data.draw(st.lists(st.booleans(), min_size=FLAGS, max_size=FLAGS), label="flags"))
    participants = Participants(
        actions={n: data.draw(action_plans, label=f"action {n}") for n in defn.steps},
        compensations={n: data.draw(compensation_plans, label=f"undo {n}") for n in defn.steps},
    )
    world = World(defn, Data(flags=flags), participants)
    play(world, data, data.draw(st.integers(0, 150), label="budget"), always)
    world.drain()
    # The operator retries a failed compensation, perhaps more than once.
    while world.can_retry(world.state) and data.draw(st.booleans(), label="operator retry"):
        world.retry()
        world.drain()
    check_outcome(world, spec)
    world.poke_terminal()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=saga_specs(), data=st.data())
def test_random_sagas_in_a_random_world(spec: SagaSpec, data: st.DataObject) -> None:
    run_world(spec, data)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=saga_specs(risky_pivot=True), data=st.data())
def test_random_sagas_around_a_pivot_that_may_time_out(spec: SagaSpec, data: st.DataObject) -> None:
    """The same world, every saga with a pivot that times out and retries: after the point
    of no return (or when it may have been passed) nothing before it is undone."""
    run_world(spec, data)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=saga_specs(), data=st.data())
def test_random_sagas_paused_and_resumed_at_random(spec: SagaSpec, data: st.DataObject) -> None:
    """The same world, with an operator pausing and resuming in every run: whatever was
    held, every invariant still holds at the end."""
    run_world(spec, data, frozenset({"pause", "resume"}))
