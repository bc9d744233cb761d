"""Replay: a saga's recorded inputs, run again through the pure core.

The core is a function of the definition, the state and one input, and every
input is in the history with its time (and the breakers' view at that moment),
so running the history again through ``start`` and ``decide`` must give the
same decisions. Replayed against the definition the saga ran on, that proves the
code still decides what it decided; against a new version, it says whether the
new version would have taken the saga down the same path.

Compared, input by input: whether it changed the saga, its refusal, the status
and revision it left, and its effects (the commands, with their payloads built
by the definition's callbacks, the timers, the lifecycle events). At the end,
the state replayed is compared with the state stored. Two fields are not: the
definition version (a new version replays as itself) and ``trace``, the
telemetry context the runtime sets outside the core.

Nothing here does I/O: no span, no metric, no message. The caller reads the
history and the state (``coordinator.client``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from coordinator.core import Decision, Input, SagaDefinition, SagaState, Start, decide, start
from coordinator.ports import HistoryEntry
from coordinator.replay._timeline import describe_input

__all__ = ["Divergence", "Replayed", "replay"]

_IGNORED = ("trace", "version")
"""State fields not compared: set outside the core, or the version replayed on."""

_SHOWN = 3
"""How many differing paths of a state a divergence names."""


class Divergence(msgspec.Struct, frozen=True, kw_only=True):
    """The first input whose replay did not give what was recorded.

    Attributes:
        index: Its position in the history (0: the start).
        at: Its time, as recorded.
        input: What it was, in a few words (``charge #1 completed``).
        what: What differed, for a human.
        recorded: The recorded side of the first difference, as JSON values.
        replayed: The replayed side.
    """

    index: int
    at: datetime
    input: str
    what: str
    recorded: Any = None
    replayed: Any = None


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    """What replaying one saga gave.

    Attributes:
        saga_id: The saga.
        name: Its definition's name.
        recorded_version: The version it ran on (from its state).
        version: The version it was replayed against.
        inputs: How many inputs its history holds.
        divergence: The first input that did not replay as recorded; None when
            every one did and the final state is the one stored.
    """

    saga_id: str
    name: str
    recorded_version: int
    version: int
    inputs: int
    divergence: Divergence | None = None

    @property
    def compatible(self) -> bool:
        """Every input gave what was recorded, and the state ends as stored."""
        return self.divergence is None


class _Diverged(Exception):
    """Raised inside the replay loop with the divergence it found."""

    def __init__(self, what: str, recorded: Any = None, replayed: Any = None) -> None:
        super().__init__(what)
        self.what, self.recorded, self.replayed = what, recorded, replayed


def replay(
    definition: SagaDefinition[Any],
    entries: Sequence[HistoryEntry],
    stored: bytes | None,
) -> Replayed:
    """Run the inputs of ``entries`` (a saga's history, oldest first) through
    ``definition`` and compare each decision, and the state at the end, with
    what was recorded (``stored``: the saga's stored state; None skips the
    comparison of the final state)."""
    head = _head(stored)
    saga_id = str(head.get("saga_id", ""))
    recorded_version = int(head.get("version", entries[0].version if entries else 0))
    result = Replayed(
        saga_id=saga_id,
        name=str(head.get("name", definition.name)),
        recorded_version=recorded_version,
        version=definition.version,
        inputs=len(entries),
    )
    if not entries:
        return result
    start_type = Start[definition.data_type]  # type: ignore[name-defined]
    state_type = SagaState[definition.data_type]  # type: ignore[name-defined]
    # The state after each revision: an input that changed nothing was decided on
    # the revision it records, which a commit of another replica may have passed
    # by the time its line was appended.
    states: dict[int, SagaState[Any]] = {}
    current: SagaState[Any] | None = None
    index = 0
    try:
        for index, entry in enumerate(entries):
            decision = _decide(definition, entry, index, states, current, start_type)
            _compare(entry, decision)
            if decision.changed:
                current = decision.state
                states[current.revision] = current
        index = len(entries) - 1
        if stored is not None and current is not None:
            _compare_state(stored, current, state_type, definition.version)
    except _Diverged as found:
        entry = entries[index]
        divergence = Divergence(
            index=index,
            at=entry.at,
            input=describe_input(msgspec.json.decode(entry.input)),
            what=found.what,
            recorded=found.recorded,
            replayed=found.replayed,
        )
        return msgspec.structs.replace(result, divergence=divergence)
    return result


def _head(stored: bytes | None) -> dict[str, Any]:
    """The saga's id, name and version, read from its stored state."""
    if stored is None:
        return {}
    try:
        found: dict[str, Any] = msgspec.json.decode(stored)
    except msgspec.DecodeError:
        return {}
    return found


def _decide(
    definition: SagaDefinition[Any],
    entry: HistoryEntry,
    index: int,
    states: dict[int, SagaState[Any]],
    current: SagaState[Any] | None,
    start_type: Any,
) -> Decision[Any]:
    kind = msgspec.json.decode(entry.input).get("type")
    try:
        if index == 0:
            if kind != "Start":
                raise _Diverged(f"the history begins with {kind}, not with the saga's start")
            first: Start[Any] = msgspec.json.decode(entry.input, type=start_type)
            return start(definition, first)
        if kind == "Start" or current is None:
            raise _Diverged("a second start in the history")
        inp: Input = msgspec.json.decode(entry.input, type=Input)
    except msgspec.ValidationError as exc:
        raise _Diverged(f"the input does not fit this definition: {exc}") from exc
    base = states.get(entry.revision - 1 if entry.changed else entry.revision, current)
    try:
        return decide(definition, base, inp)
    except Exception as exc:  # a definition that does not fit the saga's state
        raise _Diverged(f"the definition raised {type(exc).__name__}: {exc}") from exc


def _compare(entry: HistoryEntry, decision: Decision[Any]) -> None:
    """Raise ``_Diverged`` with the first thing that differs from the entry."""
    if decision.changed != entry.changed:
        said = {True: "changed the saga", False: "changed nothing"}
        raise _Diverged(
            f"recorded: it {said[entry.changed]}; replayed: it {said[decision.changed]}"
            f" ({decision.note})",
            entry.changed,
            decision.changed,
        )
    if decision.refused != entry.refused:
        raise _Diverged(
            f"refused: recorded {entry.refused!r}, replayed {decision.refused!r}",
            entry.refused,
            decision.refused,
        )
    if entry.status_after is not None and decision.state.status != entry.status_after:
        raise _Diverged(
            f"status: recorded {entry.status_after}, replayed {decision.state.status}",
            entry.status_after,
            decision.state.status,
        )
    if decision.changed and decision.state.revision != entry.revision:
        raise _Diverged(
            f"revision: recorded {entry.revision}, replayed {decision.state.revision}",
            entry.revision,
            decision.state.revision,
        )
    recorded = msgspec.json.decode(entry.effects)
    replayed = msgspec.json.decode(msgspec.json.encode(decision.effects))
    if recorded != replayed:
        raise _Diverged(_effects_differ(recorded, replayed), recorded, replayed)


def _effects_differ(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> str:
    """The first effect that differs, in words."""
    for i, (old, new) in enumerate(zip(recorded, replayed, strict=False)):
        if old != new:
            paths = _differing(old, new)
            return f"effect {i + 1} ({_effect_name(old)}) differs in {', '.join(paths)}"
    if len(recorded) > len(replayed):
        missing = ", ".join(_effect_name(e) for e in recorded[len(replayed) :])
        return f"effects missing from the replay: {missing}"
    extra = ", ".join(_effect_name(e) for e in replayed[len(recorded) :])
    return f"effects the replay adds: {extra}"


def _effect_name(effect: dict[str, Any]) -> str:
    kind = effect.get("type", "?")
    if kind == "Dispatch":
        return f"{effect.get('kind', 'action')} {effect.get('step')} #{effect.get('attempt')}"
    if kind == "Notify":
        return f"event {effect.get('event')}"
    return f"{kind} {effect.get('timer', '')}".strip()


def _compare_state(stored: bytes, replayed: SagaState[Any], state_type: Any, version: int) -> None:
    try:
        # Decoded into this definition's data type, as the runtime would load it:
        # a field a new version added takes its default on both sides.
        recorded = msgspec.json.decode(stored, type=state_type)
    except msgspec.ValidationError as exc:
        raise _Diverged(f"the stored state does not fit this definition: {exc}") from exc
    old, new = _comparable(recorded), _comparable(replayed)
    if old != new:
        paths = _differing(old, new)
        raise _Diverged(
            f"the final state differs from the stored one in {', '.join(paths)}",
            {p: _at_path(old, p) for p in paths},
            {p: _at_path(new, p) for p in paths},
        )


def _comparable(state: SagaState[Any]) -> dict[str, Any]:
    found: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(state))
    for field in _IGNORED:
        found.pop(field, None)
    return found


def _differing(old: Any, new: Any, path: str = "") -> list[str]:
    """The paths (``steps.charge.status``) where two JSON values differ, the first few."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key) != new.get(key):
                found += _differing(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if len(found) >= _SHOWN:
                return found[:_SHOWN]
        return found
    return [path or "the value"]


def _at_path(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
