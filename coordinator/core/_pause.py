"""Pause and resume: an operator holds a saga still, then lets it go on.

A paused saga sends nothing and fires no step timer. What arrives meanwhile (a
reply, a signal, a due timer, a recovered service) is recorded like any input
and decided against the saga as it would be if it were resumed now, its held
inputs applied: an input that would change nothing there (a duplicate, a stale
timer, a late reply, a refused signal) is only recorded, exactly as when the
saga runs, so dedupe holds; one that would change it is kept in ``held``.
Resume applies the held inputs in the order they came, in one transition,
stamped with the resume's time and circuit view: a command sent on resume gets
its timeout from then and goes through a closed circuit only.

Nothing here sets a step's status: resuming replays held inputs through
``decide`` itself, so the pause adds no rule of its own to the step tables.

Decisions where the issue left a choice:

* The deadline keeps running while paused; when it falls due, its timer is held
  like any other and the saga turns back on resume. With ``hold_deadline`` the
  timer is cancelled on pause and the deadline moved on by the time paused when
  the saga resumes: it keeps the time it had left, which is what an operator who
  pauses to investigate wants (applying the old deadline on resume would let a
  long pause fail the saga all the same).
* A cancel while paused is taken at once and ends the pause: the saga turns back,
  then the held inputs are applied, in one decision. The operator hears at once
  whether it was taken (a cancel held until resume could be refused then, after
  it was reported taken), a cancelled saga never waits for a resume nobody
  sends, and no action goes out only to be undone (replayed first, a held reply
  would send the next step). The held inputs still count, by the rules for
  anything that arrives after a cancel: a held success is compensated. A refused
  cancel changes nothing: the saga stays paused.
* An operator's retry is refused while paused: resume first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import msgspec

from coordinator.core._definition import SagaDefinition
from coordinator.core._effects import CancelTimer, Decision, Effect, StartTimer
from coordinator.core._inputs import (
    CancelRequested,
    Input,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    TimerFired,
)
from coordinator.core._state import SagaState
from coordinator.core._timers import TimerKey

__all__ = ["decide_paused"]

D = TypeVar("D")

Decide = Callable[[SagaDefinition[D], SagaState[D], Input], Decision[D]]

_DEADLINE = TimerKey.deadline().name


def decide_paused(
    defn: SagaDefinition[D], state: SagaState[D], inp: Input, decide: Decide[D]
) -> Decision[D]:
    """Decide an input for a paused saga, or a pause or resume for any saga.

    ``decide`` is the machine's own entry point, for the held inputs (passed in
    rather than imported: the machine imports this module).
    """
    match inp:
        case PauseRequested():
            return _pause(state, inp)
        case ResumeRequested():
            return _resume(defn, state, inp, decide)
        case CancelRequested():
            return _cancel(defn, state, inp, decide)
        case RetryRequested():
            return _unchanged(state, "", "saga is paused: resume it, then retry")
        case _:
            return _hold(defn, state, inp, decide)


def _by(who: str) -> str:
    return f" by {who}" if who else ""


def _unchanged(state: SagaState[D], note: str, refused: str = "") -> Decision[D]:
    return Decision(
        state=state,
        effects=(),
        note=note or f"refused: {refused}",
        changed=False,
        refused=refused,
        status_before=state.status,
    )


def _pause(state: SagaState[D], inp: PauseRequested) -> Decision[D]:
    if state.terminal:
        return _unchanged(state, "", f"saga is {state.status}: there is nothing to pause")
    if state.paused:
        since = state.paused_at.isoformat() if state.paused_at else "?"
        return _unchanged(state, "", f"saga is already paused{_by(state.paused_by)} since {since}")
    hold = inp.hold_deadline and state.deadline_at is not None
    effects: tuple[Effect, ...] = (CancelTimer(timer=_DEADLINE),) if hold else ()
    new = msgspec.structs.replace(
        state,
        revision=state.revision + 1,
        paused=True,
        paused_at=inp.at,
        paused_by=inp.by,
        hold_deadline=hold,
        updated_at=inp.at,
    )
    note = f"paused{_by(inp.by)}: nothing is sent until resumed" + (
        "; the deadline is held" if hold else ""
    )
    return Decision(state=new, effects=effects, note=note, changed=True, status_before=state.status)


def _unpaused(state: SagaState[D], at: datetime) -> tuple[SagaState[D], list[Effect], list[str]]:
    """The saga resumed at ``at``, its deadline moved on if it was held; held inputs not
    yet applied."""
    current = msgspec.structs.replace(
        state, paused=False, paused_at=None, paused_by="", hold_deadline=False, held=()
    )
    if not (state.hold_deadline and state.deadline_at and state.paused_at):
        return current, [], []
    # A deadline already due when the saga was paused (its timer late) stays due.
    moved = max(state.deadline_at + (at - state.paused_at), at)
    current = msgspec.structs.replace(current, deadline_at=moved)
    note = f"deadline moved to {moved.isoformat()}"
    return current, [StartTimer(timer=_DEADLINE, due=moved)], [note]


def _replay(
    defn: SagaDefinition[D],
    current: SagaState[D],
    held: tuple[Input, ...],
    now: Input,
    decide: Decide[D],
    effects: list[Effect],
    notes: list[str],
) -> SagaState[D]:
    """Apply ``held`` in order, stamped with the time and circuit view of ``now``."""
    for inp in held:
        restamped = msgspec.structs.replace(inp, at=now.at, services_down=now.services_down)
        d = decide(defn, current, restamped)
        if d.changed:
            current = d.state
            effects.extend(d.effects)
        notes.append(d.note)
    return current


def _resumed(
    before: SagaState[D], after: SagaState[D], effects: list[Effect], notes: list[str], at: datetime
) -> Decision[D]:
    # One transition, whatever number of held inputs it applied.
    new = msgspec.structs.replace(after, revision=before.revision + 1, updated_at=at)
    return Decision(
        state=new,
        effects=tuple(effects),
        note="; ".join(notes),
        changed=True,
        status_before=before.status,
    )


def _resume(
    defn: SagaDefinition[D], state: SagaState[D], inp: ResumeRequested, decide: Decide[D]
) -> Decision[D]:
    if not state.paused:
        return _unchanged(state, "", f"saga is {state.status}: it is not paused")
    current, effects, notes = _unpaused(state, inp.at)
    count = len(state.held)
    plural = "" if count == 1 else "s"
    notes.insert(0, f"resumed{_by(inp.by)}; {count} input{plural} held while paused")
    after = _replay(defn, current, state.held, inp, decide, effects, notes)
    return _resumed(state, after, effects, notes, inp.at)


def _cancel(
    defn: SagaDefinition[D], state: SagaState[D], inp: CancelRequested, decide: Decide[D]
) -> Decision[D]:
    current, effects, notes = _unpaused(state, inp.at)
    d = decide(defn, current, inp)
    if not d.changed:
        return _unchanged(state, "", d.refused or d.note)
    notes.insert(0, "cancelled while paused: the pause ends; " + d.note)
    effects.extend(d.effects)
    after = _replay(defn, d.state, state.held, inp, decide, effects, notes)
    return _resumed(state, after, effects, notes, inp.at)


def _hold(
    defn: SagaDefinition[D], state: SagaState[D], inp: Input, decide: Decide[D]
) -> Decision[D]:
    if isinstance(inp, TimerFired) and inp.timer == _DEADLINE and state.hold_deadline:
        # The poller took it just before the pause cancelled it; resume sets the new one.
        return _unchanged(state, "deadline timer ignored: the deadline is held while paused")
    current, _, _ = _unpaused(state, inp.at)
    projected = _replay(defn, current, state.held, inp, decide, [], [])
    d = decide(defn, projected, inp)
    if not d.changed:
        return _unchanged(state, f"saga paused; {d.note}", d.refused)
    new = msgspec.structs.replace(
        state, revision=state.revision + 1, held=(*state.held, inp), updated_at=inp.at
    )
    return Decision(
        state=new,
        effects=(),
        note="saga paused: held until resumed",
        changed=True,
        status_before=state.status,
    )
