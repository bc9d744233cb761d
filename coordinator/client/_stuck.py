"""Sagas that went quiet, and what each one waits for: ``saga stuck``.

A saga is stuck, for an operator, when it is running or compensating and has
had no transition for longer than a threshold. The store's listing index knows
when each saga last changed (`IdleSagas`), so only those sagas are read: their
state says which steps are open, and their history (every input and every effect
the core decided, with its time) says since when, to which service, and which
timers are set. An operator's machine has no saga code: what a wait expects and
which service a parked step needs come from the shapes the coordinators recorded
(`DefinitionShape`); a version without one leaves them empty (unknown). The
history's free text, written for people, is never read here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import msgspec

from coordinator.client._shapes import DefinitionShape
from coordinator.core import SagaState, StepState
from coordinator.ports import HistoryEntry, IdleSagas, SagaQueries, SagaStore

__all__ = ["STUCK_STATUSES", "Stuck", "StuckStore", "Wait", "find_stuck"]

STUCK_STATUSES: frozenset[str] = frozenset({"running", "compensating"})
"""A saga in any other status has ended: it waits for nothing."""


class StuckStore(SagaStore, SagaQueries, IdleSagas, Protocol):
    """What `find_stuck` reads: the index by last change, states and histories."""


class Wait(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One thing a saga waits for.

    Attributes:
        what: ``reply`` (to a command sent), ``signal``, ``service`` (its
            circuit is open, the step is parked), ``timer`` (a retry's backoff,
            or a wait's or the saga's deadline) or ``resume`` (an operator
            paused the saga).
        step: The step or wait concerned; empty for the saga's deadline.
        kind: ``action`` or ``compensation``, for a reply or a retry.
        attempt: The attempt awaited (a reply) or to be sent (a retry).
        since: When the command went out, the wait began or the step was parked.
        service: The participant service, for a reply or a parked step.
        command: The command sent, for a reply.
        signal: The signal's name, for a signal.
        timer: The timer's stored name, for a timer.
        due: When the timer falls due; for a reply, when the attempt times out.
        by: Who paused the saga, for a resume.
    """

    what: Literal["reply", "signal", "service", "timer", "resume"]
    step: str = ""
    kind: str = ""
    attempt: int = 0
    since: datetime | None = None
    service: str = ""
    command: str = ""
    signal: str = ""
    timer: str = ""
    due: datetime | None = None
    by: str = ""


class Stuck(msgspec.Struct, frozen=True, kw_only=True):
    """A saga with no transition for longer than the threshold, and its waits."""

    saga_id: str
    name: str
    status: str
    last_transition: datetime
    waits: tuple[Wait, ...]
    deadline_at: datetime | None = None


async def find_stuck(
    store: StuckStore,
    older_than: timedelta,
    *,
    shapes: Mapping[str, DefinitionShape],
    names: Collection[str] | None = None,
    limit: int = 100,
) -> list[Stuck]:
    """Running or compensating sagas with no transition for ``older_than``, oldest first.

    Args:
        store: The deployment's saga store.
        older_than: The quiet time that makes a saga stuck.
        shapes: The shape of each definition version, by ``name@version``: as
            the coordinators recorded them (``open_operator``), or `shapes_of`
            the definitions at hand. A version missing here leaves the signal of
            its waits and the service of its parked steps unknown (empty).
        names: The definitions to look at (None: all); see `IdleSagas.idle`.
        limit: At most this many.
    """
    found: list[Stuck] = []
    for saga_id, changed in await store.idle(STUCK_STATUSES, older_than, names=names, limit=limit):
        stored = await store.load(saga_id)
        if stored is None:
            continue  # expired since the index was read
        state = msgspec.json.decode(stored.state, type=SagaState[Any])
        if state.status not in STUCK_STATUSES:
            continue  # moved on since the index was read
        history = await store.history(saga_id)
        found.append(
            Stuck(
                saga_id=saga_id,
                name=state.name,
                status=state.status,
                last_transition=changed,
                waits=tuple(waits_of(state, history, shapes.get(f"{state.name}@{state.version}"))),
                deadline_at=state.deadline_at,
            )
        )
    return found


class _Trail:
    """What a saga's history says about its commands, timers and moves so far.

    Timer names are the stored ones (``coordinator.core``'s ``TimerKey`` table:
    ``timeout:{step}:{kind}:{attempt}``, ``retry:...``, ``wait:{step}``,
    ``deadline``), which never change, since sagas in flight hold them.
    """

    def __init__(self, history: Sequence[HistoryEntry]) -> None:
        self.sent: dict[tuple[str, str, int], tuple[datetime, dict[str, Any]]] = {}
        self.last_sent: dict[str, dict[str, Any]] = {}
        self.timers: dict[str, datetime] = {}
        self.started: dict[str, datetime] = {}
        self.moves: list[tuple[datetime, dict[str, Any]]] = []
        for entry in history:
            self._read(entry)

    def _read(self, entry: HistoryEntry) -> None:
        given = msgspec.json.decode(entry.input)
        given = given if isinstance(given, dict) else {}
        if given.get("type") == "TimerFired":
            self.timers.pop(str(given.get("timer")), None)
        if entry.changed:
            self.moves.append((entry.at, given))
        effects = msgspec.json.decode(entry.effects)
        for effect in effects if isinstance(effects, list) else ():
            match effect.get("type"):
                case "Dispatch":
                    key = (effect["step"], effect["kind"], int(effect["attempt"]))
                    self.sent[key] = (entry.at, effect)
                    self.last_sent[effect["step"]] = effect
                case "StartTimer":
                    self.timers[effect["timer"]] = msgspec.convert(
                        effect["due"], datetime, strict=False
                    )
                    self.started[effect["timer"]] = entry.at
                case "CancelTimer":
                    self.timers.pop(effect["timer"], None)

    def reached(self, name: str, shape: DefinitionShape | None) -> datetime | None:
        """When the saga last came to step or wait ``name``: the last change that
        finished a node before it (or started the saga), or fired its retry.

        Without the shape only the step's own retries are known.
        """
        node = shape.node(name) if shape is not None else None
        for at, given in self.moves[::-1]:
            if _retries(given, name) or (
                shape is not None and node is not None and _finishes_before(given, shape, node)
            ):
                return at
        return None

    def reply(self, step: str, kind: str, attempt: int) -> Wait:
        at, sent = self.sent.get((step, kind, attempt), (None, {}))
        return Wait(
            what="reply",
            step=step,
            kind=kind,
            attempt=attempt,
            since=at,
            service=sent.get("service", ""),
            command=sent.get("command", ""),
            due=self.timers.get(f"timeout:{step}:{kind}:{attempt}"),
        )

    def timer(self, name: str, step: str = "", kind: str = "", attempt: int = 0) -> Wait:
        due = self.timers.get(name)
        return Wait(what="timer", step=step, kind=kind, attempt=attempt, timer=name, due=due)


def _retries(given: dict[str, Any], step: str) -> bool:
    """Whether ``given`` fired a retry of the action of ``step``."""
    timer = str(given.get("timer", ""))
    return given.get("type") == "TimerFired" and timer.startswith(f"retry:{step}:action:")


def _finishes_before(given: dict[str, Any], shape: DefinitionShape, node: int) -> bool:
    """Whether ``given`` may have moved the saga on from a node before ``node``."""
    match given.get("type"):
        case "Start":
            return True
        case "StepCompleted":
            step = shape.steps.get(str(given.get("step")))
            return step is not None and step.node < node
        case "SignalReceived":
            signal = given.get("name")
            return any(w.signal == signal and w.node < node for w in shape.waits.values())
        case "TimerFired":
            prefix, _, wait = str(given.get("timer", "")).partition(":")
            waited = shape.waits.get(wait) if prefix == "wait" else None
            return waited is not None and waited.node < node  # on_timeout="continue"
        case _:
            return False


def waits_of(
    state: SagaState[Any], history: Sequence[HistoryEntry], shape: DefinitionShape | None
) -> list[Wait]:
    """What ``state`` waits for, each with the details its history and shape give."""
    trail = _Trail(history)
    waits = [w for name, step in state.steps.items() for w in _step_waits(trail, shape, name, step)]
    if state.paused:
        # Paused by an operator: it goes on only when someone resumes it.
        waits.insert(0, Wait(what="resume", since=state.paused_at, by=state.paused_by))
    if "deadline" in trail.timers:
        waits.append(trail.timer("deadline"))
    return waits


def _step_waits(
    trail: _Trail, shape: DefinitionShape | None, name: str, step: StepState
) -> list[Wait]:
    match step.status:
        case "dispatched":
            return [trail.reply(name, "action", step.attempt)]
        case "retrying":
            attempt = step.attempt + 1
            return [trail.timer(f"retry:{name}:action:{attempt}", name, "action", attempt)]
        case "compensating" if step.compensation_retry_due:
            attempt = step.compensation_attempt + 1
            timer = f"retry:{name}:compensation:{attempt}"
            return [trail.timer(timer, name, "compensation", attempt)]
        case "compensating":
            return [trail.reply(name, "compensation", step.compensation_attempt)]
        case "waiting":
            return [_signal(trail, shape, name)]
        case "awaiting_service":
            return [_parked(trail, shape, name)]
        case _:
            return []


def _signal(trail: _Trail, shape: DefinitionShape | None, name: str) -> Wait:
    # A wait with a timeout set its timer when it began; one without began when
    # the saga reached it.
    timer = f"wait:{name}"
    wait = shape.waits.get(name) if shape is not None else None
    return Wait(
        what="signal",
        step=name,
        signal=wait.signal if wait is not None else "",
        since=trail.started.get(timer) or trail.reached(name, shape),
        timer=timer if timer in trail.timers else "",
        due=trail.timers.get(timer),
    )


def _parked(trail: _Trail, shape: DefinitionShape | None, name: str) -> Wait:
    # A step is parked, instead of sent, when the saga reaches it or its retry
    # falls due; a step parked after an attempt named its service in that Dispatch.
    step = shape.steps.get(name) if shape is not None else None
    service = step.service if step is not None else trail.last_sent.get(name, {}).get("service", "")
    return Wait(what="service", step=name, service=service, since=trail.reached(name, shape))
